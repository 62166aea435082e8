"""Server-side batch jobs through the real edge (Envoy + control plane) on a local mesh with two gateway
replicas, real Redis, broker and ONNX Runtime worker: a job's gateway killed with SIGKILL mid-chunk ->
the job resumes (lease expiry) and writes exactly one output row per input row, scores equal to
PredictBatch's; the HTTP/JSON paths (submit, status, cancel) and their refusals."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from predmesh.common.values import scalar_to_value
from predmesh.local.mesh import LocalMesh, MeshOptions
from predmesh.v1 import batchjobs_pb2, batchjobs_pb2_grpc, prediction_pb2, prediction_pb2_grpc

USERS = 200
ROWS = 20_000
CHUNK = 1000
DONE = batchjobs_pb2.BATCH_JOB_STATE_DONE
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    options = MeshOptions(
        state_dir=Path(tmp_path_factory.mktemp("batchjobs")),
        demo_users=USERS,
        gateway_replicas=2,
        with_batch_jobs=True,
        with_monitor=False,
        with_triton=False,
        extra_env={
            "PREDMESH_GATEWAY_BATCH_LEASE_MS": "1500",
            "PREDMESH_GATEWAY_BATCH_POLL_MS": "50",
            "PREDMESH_GATEWAY_BATCH_ITEMS_PER_CALL": "250",
            "PREDMESH_GATEWAY_FEATURES_TIMEOUT_MS": "3000",
            "PREDMESH_GATEWAY_INFERENCE_TIMEOUT_MS": "3000",
            "PREDMESH_GATEWAY_DEFAULT_DEADLINE_MS": "5000",
        },
    )
    with LocalMesh(options) as running:
        yield running


@pytest.fixture(scope="module")
def source(mesh: LocalMesh) -> Path:
    path = mesh.batch_dir / "in.parquet"
    pq.write_table(
        pa.table(
            {
                "entity_id": [f"u{i % USERS:05d}" for i in range(ROWS)],
                "amount": [float(i % 997) for i in range(ROWS)],
                "channel": ["web" if i % 3 else "app" for i in range(ROWS)],
            }
        ),
        path,
    )
    return path


def get(jobs: Any, job_id: str) -> Any:
    return jobs.GetBatchJob(batchjobs_pb2.GetBatchJobRequest(job_id=job_id), timeout=5)


def wait_for(predicate: Any, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def lease_holders(mesh: LocalMesh, job_id: str) -> set[int]:
    """Pids of the gateways holding a chunk lease of the job right now (lease value host:pid:tag)."""
    client = redis.Redis.from_url(mesh.redis_url)
    try:
        values = [client.get(k) for k in client.scan_iter(f"predmesh:batch:{{{job_id}}}:l:*")]
    finally:
        client.close()
    return {int((v.decode() if isinstance(v, bytes) else str(v)).split(":")[1]) for v in values if v}


def test_gateway_killed_mid_job_resumes_to_exactly_one_row_per_input_row(mesh: LocalMesh, source: Path) -> None:
    out = mesh.batch_dir / "out.parquet"
    with mesh.edge_channel() as channel:
        jobs = batchjobs_pb2_grpc.BatchJobServiceStub(channel)
        job = jobs.SubmitBatchJob(
            batchjobs_pb2.SubmitBatchJobRequest(
                model="fraud", input=str(source), output=str(out), chunk_rows=CHUNK, job_id="killed-1"
            ),
            timeout=10,
        )
        assert job.rows_total == ROWS and job.chunks_total == ROWS // CHUNK
        victims: list[Any] = []

        def leased_mid_job() -> bool:
            status = get(jobs, job.job_id)
            assert status.state != DONE, "the job finished before a gateway could be killed"
            holders = lease_holders(mesh, job.job_id)
            victims[:] = [g for g in mesh.gateways if g.pid in holders]
            return status.rows_done >= 2 * CHUNK and bool(victims)

        wait_for(leased_mid_job)
        victims[0].crash()  # kill -9 a gateway holding a chunk lease
        killed = victims[0].pid
        wait_for(lambda: get(jobs, job.job_id).state == DONE)
        final = get(jobs, job.job_id)
        assert (final.rows_done, final.rows_failed, final.chunks_done) == (ROWS, 0, ROWS // CHUNK)
        wait_for(lambda: victims[0].pid != killed and victims[0].running, 60)  # the supervisor restarted it

    result = pq.read_table(out)
    assert result.num_rows == ROWS
    assert result.column("row").to_pylist() == list(range(ROWS))  # each row once, in order
    assert [e for e in result.column("error").to_pylist() if e] == []
    sample = [0, 1, CHUNK - 1, CHUNK, 7 * CHUNK + 3, ROWS - 1]
    with mesh.edge_channel() as channel:
        direct = prediction_pb2_grpc.PredictionServiceStub(channel).PredictBatch(
            prediction_pb2.PredictBatchRequest(
                model="fraud",
                items=[
                    prediction_pb2.BatchItem(
                        entity_id=f"u{i % USERS:05d}",
                        context={
                            "amount": scalar_to_value(float(i % 997)),
                            "channel": scalar_to_value("web" if i % 3 else "app"),
                        },
                    )
                    for i in sample
                ],
            ),
            timeout=10,
        )
    scores = result.column("score").to_pylist()
    versions = result.column("version").to_pylist()
    assert [scores[i] for i in sample] == pytest.approx([r.prediction.score for r in direct.results])
    assert [versions[i] for i in sample] == [r.model_version for r in direct.results]


def http(mesh: LocalMesh, method: str, path: str, body: Any = None, key: bool = True) -> tuple[int, Any]:
    url = f"{mesh.edge_scheme}://localhost:{mesh.edge_port}{path}"
    headers = mesh.http_headers() if key else {"content-type": "application/json"}
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10, context=mesh.ssl_context()) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_http_json_submit_status_cancel_and_refusals(mesh: LocalMesh, source: Path) -> None:
    body = {"model": "fraud", "input": str(source), "output": str(mesh.batch_dir / "http.parquet"), "chunk_rows": 500}
    status, job = http(mesh, "POST", "/v1/batch-jobs", body)
    assert status == 200 and job["state"] in ("BATCH_JOB_STATE_QUEUED", "BATCH_JOB_STATE_RUNNING"), job
    assert int(job["rows_total"]) == ROWS
    status, cancelled = http(mesh, "POST", f"/v1/batch-jobs/{job['job_id']}:cancel", {})
    assert status == 200 and cancelled["state"] == "BATCH_JOB_STATE_CANCELLED", cancelled
    status, seen = http(mesh, "GET", f"/v1/batch-jobs/{job['job_id']}")
    assert status == 200 and seen["state"] == "BATCH_JOB_STATE_CANCELLED"

    assert http(mesh, "GET", "/v1/batch-jobs/no-such-job")[0] == 404
    assert http(mesh, "POST", "/v1/batch-jobs", body, key=False)[0] == 401
    outside = {**body, "input": "/etc/passwd"}
    status, error = http(mesh, "POST", "/v1/batch-jobs", outside)
    assert status == 403 and error["code"] == grpc.StatusCode.PERMISSION_DENIED.value[0], error
    escape = {**body, "output": str(mesh.batch_dir / ".." / "api-key.parquet")}
    assert http(mesh, "POST", "/v1/batch-jobs", escape)[0] == 403
    assert not (mesh.state_dir / "api-key.parquet").exists()
