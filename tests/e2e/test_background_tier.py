"""The background tier on a real local mesh (`MeshOptions.background_tier`): batch-job chunks and
durable async requests are scored by a gateway of their own, not behind the edge, with features and
inference processes of their own, all at the lowest CPU priority; the edge's gateway runs no
background worker. Real Redis, broker, Envoy and ONNX Runtime worker."""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from predmesh.common.values import scalar_to_value
from predmesh.local.cpugroup import IdleCpuGroup, cpu_cgroup_dir
from predmesh.local.mesh import BACKGROUND_NICENESS, LocalMesh, MeshOptions
from predmesh.local.procs import free_port
from predmesh.v1 import batchjobs_pb2, batchjobs_pb2_grpc, jobs_pb2, prediction_pb2, prediction_pb2_grpc
from tests.e2e.test_batch_jobs import lease_holders

ROWS = 3000
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    options = MeshOptions(
        state_dir=Path(tmp_path_factory.mktemp("background")),
        demo_users=100,
        background_tier=True,
        with_batch_jobs=True,
        with_async_queue=True,
        with_monitor=False,
        with_triton=False,
        extra_env={
            "PREDMESH_GATEWAY_BATCH_POLL_MS": "50",
            "PREDMESH_GATEWAY_METRICS_PORT": str(free_port()),
        },
    )
    with LocalMesh(options) as running:
        group = running.background_group
        yield running
    assert group is None or not group.path.exists()  # the mesh removed its idle cpu cgroup


def thread_niceness(pid: int | None) -> set[int]:
    """The nice value of every thread of `pid` (gRPC's threads were started after the process began)."""
    assert pid is not None
    out = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        out.add(int((task / "stat").read_text().rsplit(")", 1)[1].split()[16]))
    return out


def cpu_cgroup(pid: int | None) -> Path:
    """The directory of the cpu cgroup process `pid` is in."""
    assert pid is not None
    found = cpu_cgroup_dir(Path(f"/proc/{pid}"))
    assert found is not None
    return found[2]


def host_allows_an_idle_group() -> bool:
    probe = IdleCpuGroup.create(f"predmesh-test-probe-{os.getpid()}")
    if probe is None:
        return False
    probe.remove()
    return True


def rows_scored(gateway: Any) -> float:
    port = gateway.environment()["PREDMESH_GATEWAY_METRICS_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("predmesh_gateway_batch_job_rows_total{")
    )


def serving(proc: Any) -> bool:
    try:
        return bool(proc.ready())
    except grpc.RpcError:  # not listening yet
        return False


def test_background_processes_run_at_the_lowest_priority_and_the_real_time_path_does_not(mesh: LocalMesh) -> None:
    assert [p.name for p in mesh.background] == ["features-background", "inference-background", "gateway-background"]
    for proc in mesh.background:
        assert thread_niceness(proc.pid) == {BACKGROUND_NICENESS}, proc.name
        group = Path(f"/proc/{proc.pid}/autogroup")  # with the kernel's autogroup on, its session's nice too
        if group.exists():
            assert group.read_text().split()[-1] == str(BACKGROUND_NICENESS), proc.name
    for proc in (*mesh.gateways, *mesh.features_replicas, *mesh.inference_replicas):
        assert thread_niceness(proc.pid) == {0}, proc.name
    described = {k: v for k, v in mesh.describe().items() if k.startswith("gateway-background (background tier")}
    assert list(described.values()) == [mesh.background[2].address]


def test_background_processes_are_in_an_idle_cpu_cgroup_where_the_host_allows_one(mesh: LocalMesh) -> None:
    group = mesh.background_group
    if group is None:  # nice alone: only where this host cannot make such a group at all
        assert not host_allows_an_idle_group()
        return
    assert (group.path / "cpu.idle").read_text().strip() == "1"
    assert sorted(group.pids()) == sorted(p.pid or 0 for p in mesh.background)
    for proc in mesh.background:
        assert cpu_cgroup(proc.pid) == group.path, proc.name
    for proc in (*mesh.gateways, *mesh.features_replicas, *mesh.inference_replicas):
        assert cpu_cgroup(proc.pid) != group.path, proc.name
    assert "idle cpu cgroup" in next(k for k in mesh.describe() if k.startswith("gateway-background"))


def test_a_batch_job_is_scored_by_the_background_tier_only(mesh: LocalMesh) -> None:
    source, out = mesh.batch_dir / "in.parquet", mesh.batch_dir / "out.parquet"
    pq.write_table(
        pa.table({"entity_id": [f"u{i % 100:05d}" for i in range(ROWS)], "amount": [float(i) for i in range(ROWS)]}),
        source,
    )
    background_gateway = mesh.background[2]
    holders: set[int] = set()
    with mesh.edge_channel() as channel:  # submitted through the edge, to the edge's gateway
        jobs = batchjobs_pb2_grpc.BatchJobServiceStub(channel)
        job = jobs.SubmitBatchJob(
            batchjobs_pb2.SubmitBatchJobRequest(model="fraud", input=str(source), output=str(out), chunk_rows=500),
            timeout=10,
        )
        deadline = time.monotonic() + 120
        while (status := jobs.GetBatchJob(batchjobs_pb2.GetBatchJobRequest(job_id=job.job_id), timeout=5)).state != (
            batchjobs_pb2.BATCH_JOB_STATE_DONE
        ):
            assert time.monotonic() < deadline, status
            holders |= lease_holders(mesh, job.job_id)
            time.sleep(0.02)
    assert (status.rows_done, status.rows_failed) == (ROWS, 0)
    assert holders <= {background_gateway.pid}  # no edge gateway took a chunk
    assert rows_scored(background_gateway) == ROWS and rows_scored(mesh.gateways[0]) == 0
    result = pq.read_table(out)
    assert result.column("row").to_pylist() == list(range(ROWS))
    assert [e for e in result.column("error").to_pylist() if e] == []


def test_an_async_request_is_scored_by_the_background_tier_and_polled_through_the_edge(mesh: LocalMesh) -> None:
    with mesh.edge_channel() as channel:
        stub = prediction_pb2_grpc.PredictionServiceStub(channel)
        request = prediction_pb2.PredictRequest(
            request_id="bg-async-1", model="fraud", entity_id="u00001", context={"amount": scalar_to_value(12.5)}
        )
        accepted = stub.PredictAsync(prediction_pb2.PredictAsyncRequest(request=request), timeout=10)
        deadline = time.monotonic() + 60
        while True:
            got = stub.GetPrediction(jobs_pb2.GetPredictionRequest(request_id=accepted.request_id), timeout=5)
            if got.state != jobs_pb2.PREDICTION_STATE_PENDING:
                break
            assert time.monotonic() < deadline, "the async request was never scored"
            time.sleep(0.1)
        direct = stub.Predict(request, timeout=10)
    # Only the background gateway runs an async worker: it scored this one, as the real-time path would.
    assert got.state == jobs_pb2.PREDICTION_STATE_DONE, got
    assert got.response.prediction.score == pytest.approx(direct.prediction.score)


def test_a_restarted_background_process_keeps_the_lowest_priority(mesh: LocalMesh) -> None:
    features = mesh.background[0]
    killed = features.pid
    features.crash()  # kill -9: the supervisor starts it again, on the same port
    deadline = time.monotonic() + 60
    while features.pid in (None, killed) or not features.running() or not serving(features):
        assert time.monotonic() < deadline, "the supervisor did not restart features-background"
        time.sleep(0.1)
    assert thread_niceness(features.pid) == {BACKGROUND_NICENESS}
    if mesh.background_group is not None:
        assert cpu_cgroup(features.pid) == mesh.background_group.path
