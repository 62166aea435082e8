"""`predmesh batch`: batch scoring of Parquet or CSV files, on this machine or as a server-side job.

    predmesh batch score in.parquet --model fraud --out out.parquet [--chunk-rows 4096] [--batch-items 1024]
    predmesh batch submit /data/batch/in.parquet --model fraud --out /data/batch/out.parquet [--wait]
    predmesh batch status JOB_ID [--wait]
    predmesh batch cancel JOB_ID

`submit`/`status`/`cancel` drive the gateway's BatchJobService: the job runs inside the mesh
(chunks leased by every gateway replica, state in Redis, resumed after a crash), on files the
gateway may reach (its allowed roots: `<state>/batch/` in a local mesh with batch jobs on); `--wait` shows a
progress bar until the job ends. `score` below runs the job from this process instead.

The input is cut into chunks of `chunk_rows` rows; each chunk is scored by `score` (the CLI sends
PredictBatch calls in the batch priority lane) and written to `<out>.parts/chunk-NNNNNN.parquet`
through a temporary file and an atomic rename: a chunk file exists only complete, so it is the
checkpoint. A job killed at any point and run again with the same arguments skips the chunks
on disk and scores only the rest; no row is scored into the output twice. The parts are then
joined in order into `out` (Parquet, or CSV by suffix): exactly one output row per input row,
with columns row, entity_id, score, label, version, degraded, error (a failed chunk's rows carry
the error and no score). `<out>.parts/job.json` pins the input and chunk size: resuming with
other ones is refused. Blocking, single-threaded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from predmesh.cli.common import add_connection_args, api_key, default_target, open_channel
from predmesh.common import batchfiles

Row = batchfiles.Row
# score(rows) -> one result per row: {"score", "label", "version", "degraded", "error"}
Scorer = Callable[[Sequence[Row]], list[Row]]
Progress = Callable[[int, int, float], None]  # rows done, rows total, seconds so far

OUTPUT_COLUMNS = batchfiles.OUTPUT_COLUMNS


@dataclass(frozen=True)
class Summary:
    rows: int
    scored_now: int  # rows scored by this run (the rest came from checkpoints)
    failed: int
    seconds: float
    first_error: str = ""

    @property
    def rows_per_s(self) -> float:
        return self.scored_now / self.seconds if self.seconds > 0 else 0.0


def _check_manifest(parts: Path, manifest: dict[str, Any]) -> None:
    path = parts / "job.json"
    if path.exists():
        found = json.loads(path.read_text())
        if found != manifest:
            raise ValueError(f"{parts} belongs to another job ({found}); remove it or use another --out")
    else:
        path.write_text(json.dumps(manifest))


def run_job(
    input_path: Path,
    output_path: Path,
    score: Scorer,
    chunk_rows: int = 4096,
    entity_column: str = "entity_id",
    progress: Progress | None = None,
) -> Summary:
    """Score `input_path` into `output_path` on this machine, chunk by chunk (predmesh.common.batchfiles:
    the same chunks, part files and output as the gateway's server-side jobs)."""
    started = time.monotonic()
    table = batchfiles.read_table(str(input_path))
    if entity_column not in table.column_names:
        raise ValueError(f"input has no {entity_column!r} column (columns: {table.column_names})")
    total = table.num_rows
    parts = output_path.with_name(output_path.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    _check_manifest(parts, {"input": str(input_path.resolve()), "rows": total, "chunk_rows": chunk_rows})
    chunks = batchfiles.chunk_count(total, chunk_rows)
    done = scored_now = 0
    for index in range(chunks):
        part = batchfiles.part_location(str(parts), index)
        start, size = batchfiles.chunk_bounds(total, chunk_rows, index)
        if not os.path.exists(part):  # the checkpoint: a complete chunk file
            rows = table.slice(start, size).to_pylist()
            batchfiles.write_atomic(batchfiles.chunk_table(start, rows, score(rows), entity_column), part)
            scored_now += size
        done += size
        if progress is not None:
            progress(done, total, time.monotonic() - started)
    _, errors = batchfiles.join_parts(str(parts), chunks, str(output_path))
    return Summary(total, scored_now, len(errors), time.monotonic() - started, errors[0] if errors else "")


def grpc_scorer(
    stub: Any,
    model: str,
    version: str,
    metadata: Sequence[tuple[str, str]],
    batch_items: int,
    entity_column: str,
    timeout_s: float,
) -> Scorer:
    """Scores rows with PredictBatch calls of up to `batch_items` rows in the batch priority lane;
    every other input column is request context. A failed call marks its rows with the error."""
    import grpc

    from predmesh.common.values import scalar_to_value
    from predmesh.v1 import jobs_pb2, prediction_pb2

    def context(row: Row) -> dict[str, Any]:
        return {k: scalar_to_value(v) for k, v in batchfiles.row_context(row, entity_column).items()}

    def score(rows: Sequence[Row]) -> list[Row]:
        out: list[Row] = []
        for start in range(0, len(rows), batch_items):
            part = rows[start : start + batch_items]
            request = prediction_pb2.PredictBatchRequest(
                model=model,
                version=version,
                priority=jobs_pb2.PRIORITY_BATCH,
                items=[prediction_pb2.BatchItem(entity_id=str(r[entity_column]), context=context(r)) for r in part],
            )
            for attempt in range(5):
                try:
                    response = stub.PredictBatch(request, timeout=timeout_s, metadata=list(metadata))
                except grpc.RpcError as err:
                    code = err.code()  # type: ignore[attr-defined]
                    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and attempt < 4:  # refused lane: back off
                        time.sleep(0.2 * 2**attempt)
                        continue
                    out.extend({"error": f"{code.name}: {err.details()}"} for _ in part)  # type: ignore[attr-defined]
                    break
                out.extend(
                    {
                        "score": r.prediction.score,
                        "label": r.prediction.label,
                        "version": r.model_version,
                        "degraded": r.degraded,
                    }
                    for r in response.results
                )
                break
        return out

    return score


def cmd_score(args: argparse.Namespace) -> int:
    from predmesh.v1 import prediction_pb2_grpc

    target = args.target or default_target(args.state_dir)
    key = api_key(args)
    metadata = [("x-api-key", key)] if key else []

    def progress(done: int, total: int, seconds: float) -> None:
        rate = done / seconds if seconds > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else 0.0
        width = 30
        filled = width * done // max(total, 1)
        bar = "#" * filled + "." * (width - filled)
        print(f"\r[{bar}] {done}/{total} rows  {rate:,.0f} rows/s  ETA {eta:.0f}s", end="", file=sys.stderr)

    with open_channel(target, args) as channel:
        stub = prediction_pb2_grpc.PredictionServiceStub(channel)
        scorer = grpc_scorer(
            stub, args.model, args.version, metadata, args.batch_items, args.entity_column, args.timeout
        )
        try:
            summary = run_job(Path(args.input), Path(args.out), scorer, args.chunk_rows, args.entity_column, progress)
        except (ValueError, OSError) as err:
            print(f"\nerror: {err}", file=sys.stderr)
            return 1
    print(file=sys.stderr)
    print(
        json.dumps(
            {
                "rows": summary.rows,
                "scored_now": summary.scored_now,
                "failed": summary.failed,
                "first_error": summary.first_error,
                "seconds": round(summary.seconds, 3),
                "rows_per_s": round(summary.rows_per_s, 1),
                "out": args.out,
            }
        )
    )
    return 0 if summary.failed == 0 else 2


_TERMINAL = ("DONE", "FAILED", "CANCELLED")


def _job_dict(job: Any) -> dict[str, Any]:
    from predmesh.v1 import batchjobs_pb2

    return {
        "job_id": job.job_id,
        "state": batchjobs_pb2.BatchJobState.Name(job.state).removeprefix("BATCH_JOB_STATE_"),
        "model": job.model,
        "version": job.version,
        "input": job.input,
        "output": job.output,
        "rows_total": job.rows_total,
        "rows_done": job.rows_done,
        "rows_failed": job.rows_failed,
        "chunks": f"{job.chunks_done}/{job.chunks_total}",
        "rows_per_s": round(job.rows_per_s, 1),
        "eta_s": round(job.eta_s, 1),
        "error": job.error,
    }


def _show(job: Any, args: argparse.Namespace, get: Callable[[], Any], ok: tuple[str, ...]) -> int:
    """Print the job as JSON (with --wait after a progress bar until it ends); 0 when its state is in `ok`,
    2 otherwise (FAILED, CANCELLED, or not DONE after --wait)."""
    view = _job_dict(job)
    while args.wait and view["state"] not in _TERMINAL:
        total = max(int(view["rows_total"]), 1)
        filled = 30 * int(view["rows_done"]) // total
        bar = "#" * filled + "." * (30 - filled)
        print(
            f"\r[{bar}] {view['rows_done']}/{view['rows_total']} rows  {view['rows_per_s']:,.0f} rows/s  "
            f"ETA {view['eta_s']:.0f}s  {view['state']}  ",
            end="",
            file=sys.stderr,
        )
        time.sleep(args.poll)
        view = _job_dict(get())
    if args.wait:
        print(file=sys.stderr)
    print(json.dumps(view))
    return 0 if view["state"] in ok else 2


def _job_call(
    args: argparse.Namespace,
    call: Callable[[Any, list[tuple[str, str]]], Any],
    ok: tuple[str, ...] = ("DONE", "QUEUED", "RUNNING"),
) -> int:
    import grpc

    from predmesh.v1 import batchjobs_pb2, batchjobs_pb2_grpc

    target = args.target or default_target(args.state_dir)
    key = api_key(args)
    metadata = [("x-api-key", key)] if key else []
    with open_channel(target, args) as channel:
        stub = batchjobs_pb2_grpc.BatchJobServiceStub(channel)
        try:
            job = call(stub, metadata)
            return _show(
                job,
                args,
                lambda: stub.GetBatchJob(
                    batchjobs_pb2.GetBatchJobRequest(job_id=job.job_id), timeout=args.timeout, metadata=metadata
                ),
                ("DONE",) if args.wait else ok,
            )
        except grpc.RpcError as err:
            print(f"error: {err.code().name}: {err.details()}", file=sys.stderr)  # type: ignore[attr-defined]
            return 1
        except KeyboardInterrupt:
            print(file=sys.stderr)
            return 130


def _server_location(location: str) -> str:
    """A URL as it is; a local path made absolute (the gateway refuses relative paths: in a local mesh it
    sees this machine's files)."""
    if "://" in location:
        return location
    return os.path.abspath(location)


def cmd_submit(args: argparse.Namespace) -> int:
    import uuid

    from predmesh.v1 import batchjobs_pb2

    request = batchjobs_pb2.SubmitBatchJobRequest(
        model=args.model,
        version=args.version,
        input=_server_location(args.input),
        output=_server_location(args.out),
        chunk_rows=args.chunk_rows,
        entity_column=args.entity_column,
        job_id=args.job_id or uuid.uuid4().hex,  # ours: a retried submit is the same job
    )
    return _job_call(args, lambda stub, md: stub.SubmitBatchJob(request, timeout=args.timeout, metadata=md))


def cmd_status(args: argparse.Namespace) -> int:
    from predmesh.v1 import batchjobs_pb2

    request = batchjobs_pb2.GetBatchJobRequest(job_id=args.job_id)
    return _job_call(args, lambda stub, md: stub.GetBatchJob(request, timeout=args.timeout, metadata=md))


def cmd_cancel(args: argparse.Namespace) -> int:
    from predmesh.v1 import batchjobs_pb2

    request = batchjobs_pb2.CancelBatchJobRequest(job_id=args.job_id)
    args.wait = False
    return _job_call(
        args, lambda stub, md: stub.CancelBatchJob(request, timeout=args.timeout, metadata=md), ("CANCELLED", "DONE")
    )


def _add_job_parsers(batch_sub: Any) -> None:
    submit = batch_sub.add_parser("submit", help="submit a server-side batch job (runs in the mesh)")
    add_connection_args(submit)
    submit.add_argument(
        "input",
        help="Parquet/CSV path or URL the gateway may read (its allowed roots; `predmesh up`: <state-dir>/batch/); "
        "a relative path is made absolute here",
    )
    submit.add_argument("--model", required=True)
    submit.add_argument("--version", default="")
    submit.add_argument("--out", required=True, help="output path or URL (.parquet or .csv) under the allowed roots")
    submit.add_argument("--entity-column", default="")
    submit.add_argument("--chunk-rows", type=int, default=0, help="rows per checkpointed chunk (0: the gateway's)")
    submit.add_argument("--job-id", default="", help="idempotency id (default: a fresh one)")
    for name, helptext in (("status", "show a batch job"), ("cancel", "cancel a batch job")):
        p = batch_sub.add_parser(name, help=helptext)
        add_connection_args(p)
        p.add_argument("job_id")
        p.set_defaults(func=cmd_status if name == "status" else cmd_cancel)
        if name == "status":
            _add_wait_args(p)
    _add_wait_args(submit)
    submit.set_defaults(func=cmd_submit)


def _add_wait_args(parser: Any) -> None:
    parser.add_argument("--wait", action="store_true", help="progress bar until the job ends")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between polls with --wait")


def add_parser(sub: Any) -> None:
    batch = sub.add_parser("batch", help="batch scoring jobs")
    batch_sub = batch.add_subparsers(dest="batch_command", required=True)
    score = batch_sub.add_parser("score", help="score a Parquet/CSV file (resumable: rerun to continue)")
    add_connection_args(score)
    score.add_argument("input", help="Parquet or CSV file with an entity column; other columns are context")
    score.add_argument("--model", required=True)
    score.add_argument("--version", default="")
    score.add_argument("--out", required=True, help="output file (.parquet or .csv); checkpoints in <out>.parts/")
    score.add_argument("--entity-column", default="entity_id")
    score.add_argument("--chunk-rows", type=int, default=4096, help="rows per checkpointed chunk")
    score.add_argument("--batch-items", type=int, default=1024, help="rows per PredictBatch call")
    score.set_defaults(func=cmd_score)
    _add_job_parsers(batch_sub)
