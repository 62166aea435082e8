"""Real-time latency alone and under a server-side batch job, and batch job throughput (not a test).

    python -m bench.batch_jobs [--rate 100] [--duration 10] [--rounds 2] [--configs 1024:1:0,1024:1:50:pace]
                               [--job-rows 20000] [--background-rows 400000]

For each `--configs` entry ITEMS:DUTY:YIELD_MS[:pace][:tier] (the gateway's BATCH_ITEMS_PER_CALL,
BATCH_DUTY_CYCLE and BATCH_YIELD_MAX_MS: rows per PredictBatch-path call of the job, share of time in calls,
longest wait for a gap in real-time traffic before a call; `pace` = BATCH_PACE on, the adaptive pace choosing
the rows per call up to ITEMS and a pause, else fixed; `tier` = the job scored by the background tier,
`MeshOptions.background_tier`: a gateway, features and orchestrator of its own at nice 19, in an idle cpu
cgroup where the host allows one) a local mesh
(`bench.mesh.bench_options`: plaintext Envoy edge, ORT in the orchestrator, no logger, no mTLS, no API key)
with server-side batch jobs on:
1. `--rounds` times, alternately: open-loop Predict through Envoy at `--rate` for `--duration`
   seconds **alone**, then the same load **while a batch job runs** (a `--background-rows` input,
   submitted before the load and cancelled after it; the job runs as fast as the gateway lets it).
   Latency from the intended send time (bench/loadgen.py); CPU of every process from /proc
   (bench/cpu.py) as cores used and, alone, microseconds per request; rows the job checkpointed
   during the load;
2. the job's own throughput: a `--job-rows` job alone, rows/s from GetBatchJob (first lease to DONE);
3. a plain loop of PredictBatch calls of the same size over the same rows through the edge
   (one call at a time, batch lane), rows/s.
Prints one line per measurement plus the 1-minute load average (other work on the box shows there).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pyarrow as pa
import pyarrow.parquet as pq

from bench import loadgen, workload
from bench.cpu import CpuSampler, per_request_us
from bench.loadgen import LoadSpec, TargetSpec
from bench.mesh import bench_options
from predmesh.common.values import scalar_to_value
from predmesh.local.mesh import LocalMesh, MeshOptions
from predmesh.local.procs import free_port
from predmesh.v1 import batchjobs_pb2, batchjobs_pb2_grpc, jobs_pb2, prediction_pb2, prediction_pb2_grpc

COLUMNS = ["entity_id", *workload.REQUEST_FEATURES]


def write_input(path: Path, rows: int) -> None:
    source = workload.transactions()
    data = {c: [source[i % len(source)][c] for i in range(rows)] for c in COLUMNS}
    pq.write_table(pa.table(data), path)


def submit(jobs: Any, source: Path, target: Path, chunk_rows: int) -> Any:
    request = batchjobs_pb2.SubmitBatchJobRequest(
        model="fraud", input=str(source), output=str(target), chunk_rows=chunk_rows
    )
    return jobs.SubmitBatchJob(request, timeout=30)


def status(jobs: Any, job_id: str) -> Any:
    return jobs.GetBatchJob(batchjobs_pb2.GetBatchJobRequest(job_id=job_id), timeout=10)


@contextlib.contextmanager
def running_job(jobs: Any, source: Path, target: Path, chunk_rows: int, progress: dict[str, float]) -> Iterator[None]:
    """A batch job running during the block: submitted and RUNNING before, cancelled after (then 2 s for
    the call in flight to end; the tier is quiet within ~0.5 s of a cancel). `progress` gets its rows/s
    over the block and `finished` (1.0 when it ended DONE during the block: the input was too small)."""
    job = submit(jobs, source, target, chunk_rows)
    wait_state(jobs, job.job_id, (batchjobs_pb2.BATCH_JOB_STATE_RUNNING,))
    before, started = status(jobs, job.job_id).rows_done, time.monotonic()
    try:
        yield
    finally:
        after = status(jobs, job.job_id)
        progress["rows_per_s"] = (after.rows_done - before) / (time.monotonic() - started)
        progress["finished"] = float(after.state == batchjobs_pb2.BATCH_JOB_STATE_DONE)
        jobs.CancelBatchJob(batchjobs_pb2.CancelBatchJobRequest(job_id=job.job_id), timeout=10)
        time.sleep(2.0)


def wait_state(jobs: Any, job_id: str, states: tuple[int, ...], timeout_s: float = 600.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        job = status(jobs, job_id)
        if job.state in states:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job.state}")
        time.sleep(0.1)


def sessions(mesh: LocalMesh) -> dict[str, list[int]]:
    assert mesh.envoy is not None and mesh.redis is not None
    parts = {
        "edge": [mesh.envoy.pid or 0],
        "gateway": [g.pid or 0 for g in mesh.gateways],
        "features": [f.pid or 0 for f in mesh.features_replicas],
        "orchestrator": [i.pid or 0 for i in mesh.inference_replicas],
        "redis": [mesh.redis.pid or 0],
    }
    if mesh.background:  # the background tier's gateway, features and orchestrator, together
        parts["background"] = [p.pid or 0 for p in mesh.background]
    return parts


def tier_note(mesh: LocalMesh) -> str:
    idle = ", idle cpu cgroup" if mesh.background_group is not None else ", no idle cpu cgroup here"
    return f"; background tier (nice 19{idle})"


def realtime(mesh: LocalMesh, args: argparse.Namespace, seed: int) -> tuple[Any, dict[str, float], float]:
    """(load result, CPU seconds per part over the measured window, wall seconds of the whole run)."""
    target = TargetSpec("bench.targets:make_predict", {"address": mesh.edge_address, "model": "fraud"})
    spec = LoadSpec(mode="open", rate=args.rate, duration_s=args.duration, warmup_requests=100, seed=seed)
    started = time.monotonic()
    with CpuSampler(sessions(mesh)) as sampler:
        result = loadgen.run(target, spec)
    return result, sampler.between(*result.window), time.monotonic() - started


def line(label: str, result: Any, cpu: dict[str, float], extra: str = "") -> str:
    window = result.window[1] - result.window[0]
    cores = sum(cpu.values()) / window if window > 0 else 0.0
    us = per_request_us(cpu, result.ok)
    lat = result.latency_ms
    return (
        f"{label:28s} ok {result.ok:5d} err {sum(result.errors.values()) if result.errors else 0:3d} "
        f"{dict(result.errors) if result.errors else ''}  "
        f"p50 {lat['p50']:6.2f} ms  p99 {lat['p99']:7.2f} ms  cores {cores:4.2f}  "
        f"CPU/req {sum(us.values()):7.0f} us ({', '.join(f'{k} {v:.0f}' for k, v in us.items())}){extra}  "
        f"load {os.getloadavg()[0]:.1f}"
    )


def batch_loop(mesh: LocalMesh, rows: int, items: int) -> float:
    """rows/s of one-at-a-time PredictBatch calls of `items` rows (batch lane) over `rows` rows."""
    source = workload.transactions()
    with mesh.edge_channel() as channel:
        stub = prediction_pb2_grpc.PredictionServiceStub(channel)
        started = time.monotonic()
        for start in range(0, rows, items):
            part = [source[(start + i) % len(source)] for i in range(min(items, rows - start))]
            request = prediction_pb2.PredictBatchRequest(
                model="fraud",
                priority=jobs_pb2.PRIORITY_BATCH,
                items=[
                    prediction_pb2.BatchItem(
                        entity_id=r["entity_id"],
                        context={k: scalar_to_value(r[k]) for k in workload.REQUEST_FEATURES},
                    )
                    for r in part
                ],
            )
            stub.PredictBatch(request, timeout=60)
        return rows / (time.monotonic() - started)


def pace_values(metrics_port: int) -> dict[str, float]:
    """The gateway's adaptive pace now (its /metrics): items, pause_s, overloaded, verdict counts."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    except OSError:
        return {}
    names = {
        "predmesh_gateway_background_pace_items ": "items",
        "predmesh_gateway_background_pace_pause_seconds ": "pause_s",
        "predmesh_gateway_background_overloaded ": "overloaded",
        'predmesh_gateway_background_pace_decisions_total{kind="good"} ': "good",
        'predmesh_gateway_background_pace_decisions_total{kind="bad"} ': "bad",
    }
    out = {}
    for raw in text.splitlines():
        for prefix, key in names.items():
            if raw.startswith(prefix):
                out[key] = float(raw.rpartition(" ")[2])
    return out


class PaceSampler:
    """Samples the pace every `every_s` in a thread while the load runs (with a job)."""

    def __init__(self, metrics_port: int, every_s: float = 0.25) -> None:
        self._port = metrics_port
        self._every_s = every_s
        self._stop = threading.Event()
        self.samples: list[dict[str, float]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            values = pace_values(self._port)
            if values:
                self.samples.append(values)

    def __enter__(self) -> PaceSampler:
        self.samples.append(pace_values(self._port))
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(pace_values(self._port))

    def summary(self) -> str:
        found = [v for v in self.samples if "items" in v]
        if not found:
            return "no pace"
        items = sorted(v["items"] for v in found)
        pauses = sorted(v.get("pause_s", 0.0) * 1e3 for v in found)
        overloaded = sum(1 for v in found if v.get("overloaded"))
        verdicts = {k: found[-1].get(k, 0.0) - found[0].get(k, 0.0) for k in ("good", "bad")}
        return (
            f"pace rows/call median {items[len(items) // 2]:.0f} (min {items[0]:.0f}, max {items[-1]:.0f}), "
            f"pause median {pauses[len(pauses) // 2]:.0f} ms (max {pauses[-1]:.0f}), overloaded "
            f"{overloaded}/{len(found)} samples, verdicts good {verdicts['good']:.0f} bad {verdicts['bad']:.0f}"
        )


def job_mesh_options(state: Path, tier: bool, gateway_env: dict[str, str]) -> MeshOptions:
    """The measured mesh (bench_options, Envoy edge, no logger) with server-side batch jobs on, polled
    every 100 ms, scored in the path or (`tier`) by the background tier; `gateway_env` on top."""
    return dataclasses.replace(
        bench_options(state, logging_on=False, edge=True),
        with_batch_jobs=True,
        background_tier=tier,
        supervise=False,
        extra_env={"PREDMESH_GATEWAY_BATCH_POLL_MS": "100", **gateway_env},
    )


def measure(config: str, args: argparse.Namespace, state: Path) -> None:
    items_text, duty, yield_ms, *flags = config.split(":")
    items = int(items_text)
    paced, tier = "pace" in flags, "tier" in flags
    metrics_port = free_port()
    options = job_mesh_options(
        state,
        tier,
        {
            "PREDMESH_GATEWAY_BATCH_ITEMS_PER_CALL": str(items),
            "PREDMESH_GATEWAY_MAX_BATCH_ITEMS": str(max(1024, items)),
            "PREDMESH_GATEWAY_BATCH_WORKERS": str(args.workers),
            "PREDMESH_GATEWAY_BATCH_DUTY_CYCLE": duty,
            "PREDMESH_GATEWAY_BATCH_YIELD_MAX_MS": yield_ms,
            "PREDMESH_GATEWAY_BATCH_PACE": "true" if paced else "false",
            "PREDMESH_GATEWAY_METRICS_PORT": str(metrics_port),
        },
    )
    with LocalMesh(options) as mesh:
        if tier:  # the pace that matters is the background gateway's (its own /metrics port)
            metrics_port = int(mesh.background[-1].environment()["PREDMESH_GATEWAY_METRICS_PORT"])
        background, small = mesh.batch_dir / "background.parquet", mesh.batch_dir / "job.parquet"
        write_input(background, args.background_rows)
        write_input(small, args.job_rows)
        print(
            f"## items per call {items}{' (most; adaptive pace)' if paced else ''}, duty cycle {duty}, "
            f"yield {yield_ms} ms (workers {args.workers}){tier_note(mesh) if tier else ''}",
            flush=True,
        )
        with mesh.edge_channel() as channel:
            jobs = batchjobs_pb2_grpc.BatchJobServiceStub(channel)
            for round_ in range(args.rounds):
                result, cpu, _ = realtime(mesh, args, seed=round_ * 2 + 1)
                alone_p99 = result.latency_ms["p99"]
                print(line(f"round {round_} alone", result, cpu), flush=True)
                target = mesh.batch_dir / f"bg-{round_}.parquet"
                progress: dict[str, float] = {}
                with (
                    running_job(jobs, background, target, args.chunk_rows, progress),
                    PaceSampler(metrics_port) as paced_by,
                ):
                    result, cpu, _ = realtime(mesh, args, seed=round_ * 2 + 2)
                finished = " (job FINISHED during the load: raise --background-rows)" if progress["finished"] else ""
                ratio = result.latency_ms["p99"] / alone_p99 if alone_p99 > 0 else 0.0
                rate = progress["rows_per_s"]
                extra = f"  job {rate:,.0f} rows/s{finished}  p99 ratio {ratio:.2f}x  {paced_by.summary()}"
                print(line(f"round {round_} with batch job", result, cpu, extra), flush=True)
            with CpuSampler(sessions(mesh)) as sampler:
                t0 = time.time()
                job = submit(jobs, small, mesh.batch_dir / "alone.parquet", args.chunk_rows)
                done = wait_state(jobs, job.job_id, (batchjobs_pb2.BATCH_JOB_STATE_DONE,))
                t1 = time.time()
            cpu_row = per_request_us(sampler.between(t0, t1), args.job_rows)
            print(
                f"batch job alone: {args.job_rows} rows, {done.rows_per_s:,.0f} rows/s (first lease to DONE), "
                f"failed {done.rows_failed}; CPU/row {sum(cpu_row.values()):.0f} us "
                f"({', '.join(f'{k} {v:.0f}' for k, v in cpu_row.items())})  load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
        loop = batch_loop(mesh, args.job_rows, items)
        print(f"plain PredictBatch loop ({items} rows/call): {loop:,.0f} rows/s  load {os.getloadavg()[0]:.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.batch_jobs")
    parser.add_argument("--rate", type=float, default=100.0, help="real-time Predict requests/s (open loop)")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--configs", default="1024:1:0,64:1:50", help="ITEMS:DUTY:YIELD_MS,... one mesh each")
    parser.add_argument("--workers", type=int, default=1, help="PREDMESH_GATEWAY_BATCH_WORKERS")
    parser.add_argument("--chunk-rows", type=int, default=4096)
    parser.add_argument("--job-rows", type=int, default=20_000)
    parser.add_argument("--background-rows", type=int, default=400_000)
    args = parser.parse_args(argv)
    grpc_errors = (grpc.RpcError,)
    work = Path(tempfile.mkdtemp(prefix="batch-jobs-bench-"))
    print(f"cores {os.cpu_count()}, load average {os.getloadavg()}", flush=True)
    for index, config in enumerate(args.configs.split(",")):
        try:
            measure(config, args, work / f"config-{index}")
        except grpc_errors as err:
            print(f"{config}: {err}")
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
