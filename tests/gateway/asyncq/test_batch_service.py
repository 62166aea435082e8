"""BatchJobService on a real gateway server (upstream fakes) with a real redis-server: submit -> DONE
with PredictBatch's scores, CSV in and out, cancel, and every refusal (no key, other key, unknown job,
paths outside the allowed roots, bad input)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from predmesh.common.values import scalar_to_value
from predmesh.v1 import batchjobs_pb2, batchjobs_pb2_grpc, prediction_pb2, prediction_pb2_grpc
from services.gateway.app import GatewayApp
from services.gateway.settings import GatewaySettings
from tests.gateway.asyncq.support import AUTH, KEYS, HoldingUpstreams, until

ROOT = Path(__file__).resolve().parents[3]
ROWS = 5000
DONE = batchjobs_pb2.BATCH_JOB_STATE_DONE


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "batch"
    path.mkdir()
    return path


@pytest.fixture
async def gateway(upstreams: HoldingUpstreams, redis_url: str, root: Path) -> AsyncIterator[GatewayApp]:
    app = GatewayApp(
        GatewaySettings(
            port=0,
            grace_s=0.2,
            features_target=upstreams.address,
            inference_target=upstreams.address,
            api_keys=KEYS,
            async_redis_url=redis_url,
            batch_allowed_roots=[str(root), "memory://batch-tests/"],
            batch_lease_ms=2000.0,
            batch_poll_ms=20.0,
            batch_items_per_call=500,
            features_timeout_ms=10000,
            inference_timeout_ms=10000,
        )
    )
    await app.start()
    yield app
    await bounded(app.stop(), "stopping the gateway")


async def bounded(step: Any, what: str, timeout_s: float = 20.0) -> None:
    """Await a teardown step; if it hangs, fail naming it with every task's stack (not a silent timeout)."""
    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        for other in asyncio.all_tasks():
            other.print_stack(limit=10, file=sys.stderr)
        task.cancel()
        raise AssertionError(f"{what} did not finish within {timeout_s}s (task stacks on stderr)")


@pytest.fixture
async def stubs(gateway: GatewayApp) -> AsyncIterator[tuple[Any, Any]]:
    channel = grpc.aio.insecure_channel(gateway.address)
    yield batchjobs_pb2_grpc.BatchJobServiceStub(channel), prediction_pb2_grpc.PredictionServiceStub(channel)
    await bounded(channel.close(), "closing the client channel")


def write_input(path: Path, rows: int = ROWS) -> None:
    table = pa.table({"entity_id": [f"u{i}" for i in range(rows)], "amount": [float(i % 997) for i in range(rows)]})
    if path.suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)


async def wait_state(stub: Any, job_id: str, state: int, key: str = "fraud-key") -> Any:
    found: list[Any] = []

    async def reached() -> bool:
        job = await stub.GetBatchJob(
            batchjobs_pb2.GetBatchJobRequest(job_id=job_id), metadata=(("x-api-key", key),), timeout=5
        )
        found[:] = [job]
        return bool(job.state == state)

    await until(reached, timeout_s=60)
    return found[0]


async def test_job_scores_every_row_as_predict_batch_does(stubs: tuple[Any, Any], root: Path) -> None:
    jobs, predictions = stubs
    write_input(root / "in.parquet")
    submitted = await jobs.SubmitBatchJob(
        batchjobs_pb2.SubmitBatchJobRequest(
            model="fraud", input=str(root / "in.parquet"), output=str(root / "out.parquet"), chunk_rows=1000
        ),
        metadata=AUTH,
        timeout=10,
    )
    assert submitted.state == batchjobs_pb2.BATCH_JOB_STATE_QUEUED and submitted.rows_total == ROWS
    assert submitted.chunks_total == 5
    done = await wait_state(jobs, submitted.job_id, DONE)
    assert (done.rows_done, done.rows_failed, done.chunks_done) == (ROWS, 0, 5)
    # the parts are removed right after the job is marked DONE (never before: a crash between the
    # two would leave a DONE-less job whose final join has no parts to read)
    await until(lambda: not (root / "out.parquet.parts").exists(), timeout_s=10)
    assert done.rows_per_s > 0 and done.eta_s == 0 and done.finished_ms >= done.created_ms

    out = pq.read_table(root / "out.parquet")
    assert out.column_names == ["row", "entity_id", "score", "label", "version", "degraded", "error"]
    assert out.column("row").to_pylist() == list(range(ROWS))
    assert out.column("entity_id").to_pylist()[:2] == ["u0", "u1"]
    sample = [0, 1, 999, 1000, 2500, ROWS - 1]
    direct = await predictions.PredictBatch(
        prediction_pb2.PredictBatchRequest(
            model="fraud",
            items=[
                prediction_pb2.BatchItem(entity_id=f"u{i}", context={"amount": scalar_to_value(float(i % 997))})
                for i in sample
            ],
        ),
        metadata=AUTH,
        timeout=10,
    )
    scores = out.column("score").to_pylist()
    assert [scores[i] for i in sample] == pytest.approx([r.prediction.score for r in direct.results])
    versions = out.column("version").to_pylist()
    assert [versions[i] for i in sample] == [r.model_version for r in direct.results]

    again = await jobs.SubmitBatchJob(  # a retried submit under a caller-chosen id is the same job
        batchjobs_pb2.SubmitBatchJobRequest(
            model="fraud", input=str(root / "in.parquet"), output=str(root / "o2.parquet"), job_id="mine-1"
        ),
        metadata=AUTH,
        timeout=10,
    )
    retried = await jobs.SubmitBatchJob(
        batchjobs_pb2.SubmitBatchJobRequest(
            model="fraud", input=str(root / "in.parquet"), output=str(root / "o2.parquet"), job_id="mine-1"
        ),
        metadata=AUTH,
        timeout=10,
    )
    assert again.job_id == retried.job_id == "mine-1" and again.created_ms == retried.created_ms


async def test_csv_in_and_out_and_memory_urls(stubs: tuple[Any, Any], root: Path) -> None:
    jobs, _ = stubs
    write_input(root / "in.csv", 1200)
    job = await jobs.SubmitBatchJob(
        batchjobs_pb2.SubmitBatchJobRequest(
            model="fraud", input=f"file://{root}/in.csv", output=str(root / "out.csv"), chunk_rows=500
        ),
        metadata=AUTH,
        timeout=10,
    )
    await wait_state(jobs, job.job_id, DONE)
    out = pacsv.read_csv(root / "out.csv")
    assert out.num_rows == 1200 and out.column("row").to_pylist() == list(range(1200))
    assert out.column("score").to_pylist()[:3] == pytest.approx([0.0, 0.001, 0.002])

    with pytest.raises(grpc.aio.AioRpcError) as err:  # memory:// is allowed, but this file is not there
        await jobs.SubmitBatchJob(
            batchjobs_pb2.SubmitBatchJobRequest(
                model="fraud", input="memory://batch-tests/none.parquet", output="memory://batch-tests/o.parquet"
            ),
            metadata=AUTH,
            timeout=10,
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_cancel_stops_the_job(stubs: tuple[Any, Any], root: Path, upstreams: HoldingUpstreams) -> None:
    jobs, _ = stubs
    write_input(root / "in.parquet")
    upstreams.hold.clear()  # inference waits: the job cannot finish before it is cancelled
    job = await jobs.SubmitBatchJob(
        batchjobs_pb2.SubmitBatchJobRequest(
            model="fraud", input=str(root / "in.parquet"), output=str(root / "out.parquet"), chunk_rows=1000
        ),
        metadata=AUTH,
        timeout=10,
    )
    await wait_state(jobs, job.job_id, batchjobs_pb2.BATCH_JOB_STATE_RUNNING)
    with pytest.raises(grpc.aio.AioRpcError) as err:  # another key does not see (nor cancel) it
        await jobs.CancelBatchJob(
            batchjobs_pb2.CancelBatchJobRequest(job_id=job.job_id), metadata=(("x-api-key", "other-key"),), timeout=5
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    cancelled = await jobs.CancelBatchJob(
        batchjobs_pb2.CancelBatchJobRequest(job_id=job.job_id), metadata=AUTH, timeout=5
    )
    assert cancelled.state == batchjobs_pb2.BATCH_JOB_STATE_CANCELLED and cancelled.finished_ms > 0
    upstreams.hold.set()  # the chunk in flight is abandoned: no further chunk starts, no output
    final = await wait_state(jobs, job.job_id, batchjobs_pb2.BATCH_JOB_STATE_CANCELLED)
    assert final.rows_done < ROWS and not (root / "out.parquet").exists()


async def test_cancelled_and_failed_jobs_leave_no_parts(
    stubs: tuple[Any, Any], root: Path, upstreams: HoldingUpstreams
) -> None:
    jobs, _ = stubs
    write_input(root / "in.parquet", 500)
    parts = root / "out.parquet.parts"

    async def submit(output: str) -> Any:
        # 50-row chunks: one call each (the pace starts above 50 rows per call)
        request = batchjobs_pb2.SubmitBatchJobRequest(
            model="fraud", input=str(root / "in.parquet"), output=str(root / output), chunk_rows=50
        )
        return await jobs.SubmitBatchJob(request, metadata=AUTH, timeout=10)

    async def status(job_id: str) -> Any:
        return await jobs.GetBatchJob(batchjobs_pb2.GetBatchJobRequest(job_id=job_id), metadata=AUTH, timeout=5)

    upstreams.hold.clear()
    upstreams.passes = 1  # chunk 0 is scored and checkpointed, chunk 1 waits in inference
    job = await submit("out.parquet")
    await until(lambda: (parts / job.job_id / "chunk-000000.parquet").exists(), timeout_s=30)
    await until(lambda: upstreams.calls == 2, timeout_s=30)  # chunk 1 is held in inference
    await jobs.CancelBatchJob(batchjobs_pb2.CancelBatchJobRequest(job_id=job.job_id), metadata=AUTH, timeout=5)
    assert not parts.exists()  # removed by the cancel
    upstreams.hold.set()  # chunk 1 completes after the cancel: its part is written, then removed

    async def late_chunk_recorded() -> bool:
        return bool((await status(job.job_id)).rows_done == 100)

    await until(late_chunk_recorded, timeout_s=30)
    await until(lambda: not parts.exists(), timeout_s=10)
    assert (await status(job.job_id)).state == batchjobs_pb2.BATCH_JOB_STATE_CANCELLED
    assert not (root / "out.parquet").exists()

    # a job failing mid-way (chunk 3's part cannot be written: a directory is in its place)
    upstreams.hold.clear()
    failing = await submit("fail.parquet")
    blocker = root / "fail.parquet.parts" / failing.job_id / "chunk-000003.parquet"
    blocker.mkdir(parents=True)
    upstreams.hold.set()
    final = await wait_state(jobs, failing.job_id, batchjobs_pb2.BATCH_JOB_STATE_FAILED)
    assert "output not writable" in final.error and final.rows_done >= 150
    await until(lambda: not (root / "fail.parquet.parts").exists(), timeout_s=10)


@pytest.mark.parametrize(
    ("request_fields", "metadata", "code"),
    [
        ({"input": "IN", "output": "OUT"}, (), grpc.StatusCode.UNAUTHENTICATED),
        ({"input": "IN", "output": "OUT"}, (("x-api-key", "nope"),), grpc.StatusCode.UNAUTHENTICATED),
        ({"input": "/etc/passwd", "output": "OUT"}, AUTH, grpc.StatusCode.PERMISSION_DENIED),
        ({"input": "IN", "output": "/tmp/elsewhere.parquet"}, AUTH, grpc.StatusCode.PERMISSION_DENIED),
        ({"input": "ROOT/../in.parquet", "output": "OUT"}, AUTH, grpc.StatusCode.PERMISSION_DENIED),
        ({"input": "s3://bucket/in.parquet", "output": "OUT"}, AUTH, grpc.StatusCode.PERMISSION_DENIED),
        ({"input": "memory://batch-tests/../x.parquet", "output": "OUT"}, AUTH, grpc.StatusCode.PERMISSION_DENIED),
        ({"input": "ROOT/missing.parquet", "output": "OUT"}, AUTH, grpc.StatusCode.NOT_FOUND),
        ({"input": "ROOT/bad.parquet", "output": "OUT"}, AUTH, grpc.StatusCode.INVALID_ARGUMENT),
        ({"input": "IN", "output": "ROOT/out.txt"}, AUTH, grpc.StatusCode.INVALID_ARGUMENT),
        ({"input": "IN", "output": "OUT", "entity_column": "user"}, AUTH, grpc.StatusCode.INVALID_ARGUMENT),
        ({"input": "IN", "output": "OUT", "chunk_rows": 10**6}, AUTH, grpc.StatusCode.INVALID_ARGUMENT),
        ({"input": "in.parquet", "output": "OUT"}, AUTH, grpc.StatusCode.INVALID_ARGUMENT),
        ({"input": "IN", "output": "OUT", "model": "secret"}, AUTH, grpc.StatusCode.PERMISSION_DENIED),
        ({"input": "IN", "output": "OUT", "model": ""}, AUTH, grpc.StatusCode.INVALID_ARGUMENT),
        ({"input": "IN", "output": "OUT", "job_id": "../x"}, AUTH, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_refused_submissions(
    stubs: tuple[Any, Any], root: Path, request_fields: dict[str, Any], metadata: Any, code: grpc.StatusCode
) -> None:
    jobs, _ = stubs
    write_input(root / "in.parquet", 10)
    (root / "bad.parquet").write_bytes(b"not parquet")
    (root.parent / "in.parquet").write_bytes(b"outside")
    names = {"IN": str(root / "in.parquet"), "OUT": str(root / "out.parquet")}
    fields = {"model": "fraud", **request_fields}
    for name in ("input", "output"):
        fields[name] = names.get(fields[name], fields[name].replace("ROOT", str(root)))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await jobs.SubmitBatchJob(batchjobs_pb2.SubmitBatchJobRequest(**fields), metadata=metadata, timeout=10)
    assert err.value.code() == code, err.value.details()
    assert str(root) not in (err.value.details() or "").replace(fields["input"], "").replace(fields["output"], "")
    assert not (root / "out.parquet").exists()


async def test_unknown_job_and_missing_key(stubs: tuple[Any, Any]) -> None:
    jobs, _ = stubs
    for call, request in (
        (jobs.GetBatchJob, batchjobs_pb2.GetBatchJobRequest(job_id="nope")),
        (jobs.CancelBatchJob, batchjobs_pb2.CancelBatchJobRequest(job_id="nope")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(request, metadata=AUTH, timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(request, timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def cli(address: str, *args: str) -> list[str]:
    connection = ["--target", address, "--plaintext", "--api-key", "fraud-key", "--timeout", "10"]
    return [sys.executable, "-m", "predmesh.cli", "batch", *args, *connection]


async def run_cli(command: list[str]) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(*command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_submit_wait_status_and_cancel(gateway: GatewayApp, root: Path) -> None:
    write_input(root / "in.parquet", 3000)
    source, target = str(root / "in.parquet"), str(root / "cli.parquet")
    code, out, err = await run_cli(
        cli(gateway.address, "submit", source, "--model", "fraud", "--out", target, "--chunk-rows", "1000", "--wait")
    )
    assert code == 0, err
    job = json.loads(out)
    assert (job["state"], job["rows_done"], job["chunks"]) == ("DONE", 3000, "3/3") and "rows/s" in err
    assert pq.read_table(target).num_rows == 3000
    code, out, _ = await run_cli(cli(gateway.address, "status", job["job_id"]))
    assert code == 0 and json.loads(out)["state"] == "DONE"
    code, out, _ = await run_cli(cli(gateway.address, "cancel", job["job_id"]))  # finished: stays DONE
    assert code == 0 and json.loads(out)["state"] == "DONE"
    code, _, err = await run_cli(cli(gateway.address, "status", "no-such-job"))
    assert code == 1 and "NOT_FOUND" in err
    code, _, err = await run_cli(cli(gateway.address, "submit", "/etc/hosts.csv", "--model", "fraud", "--out", target))
    assert code == 1 and "PERMISSION_DENIED" in err
