"""Replicas under load: `predmesh up --replicas gateway=2,features=2,inference=2 --redis-cluster`.

One supervised mesh (Envoy -> 2 gateways -> 2 features (Redis Cluster 3+3) + 2 orchestrators).
- both replicas of features and of inference do work (the gateways round-robin over `ipv4:a,b`);
- `kill -9` of one replica of each service costs 0 errors and 0 degraded answers (the gateway
  re-sends a call that failed UNAVAILABLE to the other replica; Envoy retries a reset gateway);
- `kill -9` of a Redis master costs 0 errors; answers are degraded only within the failover
  window (the supervisor restarts the node, or its replica is promoted), then never again.
  (A promotion under load is asserted in tests/features/test_cluster.py.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from predmesh.featurestore.layout import entity_key
from predmesh.local.mesh import LocalMesh, MeshOptions
from predmesh.local.procs import ManagedProcess, wait_until
from tests.faults.harness import Load, Outcome

RATE = 40.0
PRE_S = 2.0
POST_S = 2.0
RESTART_BOUND_S = 30.0
REDIS_FAILOVER_WINDOW_S = 8.0  # node timeout 1 s + election + client refresh, on a busy 2-core box
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    options = MeshOptions(
        state_dir=Path(tmp_path_factory.mktemp("replicas")),
        demo_users=200,
        gateway_replicas=2,
        features_replicas=2,
        inference_replicas=2,
        redis_cluster=True,
        with_logger=False,
        extra_env={
            "PREDMESH_GATEWAY_FEATURES_TIMEOUT_MS": "2000",
            "PREDMESH_GATEWAY_INFERENCE_TIMEOUT_MS": "2000",
            "PREDMESH_GATEWAY_DEFAULT_DEADLINE_MS": "4000",
            "PREDMESH_FEATURES_REDIS_TIMEOUT_MS": "500",
            "PREDMESH_FEATURES_CACHE_TTL_MS": "0",  # every request reads Redis (the cluster's failover shows)
        },
    )
    with LocalMesh(options) as running:
        yield running


@pytest.fixture(scope="module")
def load(mesh: LocalMesh) -> Iterator[Load]:
    generator = Load(mesh, rate=RATE)
    generator.start()
    try:
        yield generator
    finally:
        generator.stop()


def _cpu_s(proc: ManagedProcess) -> float:
    assert proc.pid is not None
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, clock ticks of 10 ms


def _all_serving(mesh: LocalMesh) -> bool:
    assert mesh.supervisor is not None
    return all(p["state"] == "running" and p["health"] == "SERVING" for p in mesh.supervisor.snapshot()["processes"])


def _settled(load: Load, start: float, end: float) -> list[Outcome]:
    wait_until(lambda: all(o.code != "PENDING" for o in load.window(start, end)), 15, "answers of the window")
    return load.window(start, end)


def test_every_replica_serves(mesh: LocalMesh, load: Load) -> None:
    wait_until(lambda: _all_serving(mesh), 60, "every process SERVING")
    replicas = [*mesh.features_replicas, *mesh.inference_replicas]
    assert [p.name for p in replicas] == ["features-0", "features-1", "inference-0", "inference-1"]
    before = {p.name: _cpu_s(p) for p in replicas}
    start = time.time()
    time.sleep(4.0)
    used = {p.name: _cpu_s(p) - before[p.name] for p in replicas}
    outcomes = _settled(load, start, time.time())
    assert outcomes and all(o.code == "OK" and not o.degraded for o in outcomes)
    for service in ("features", "inference"):
        pair = [used[f"{service}-0"], used[f"{service}-1"]]
        assert min(pair) >= 0.2 * sum(pair) > 0, f"{service} replicas unevenly used (CPU s): {pair}"


@pytest.mark.parametrize("process", ["features-1", "inference-1", "gateway-1"])
def test_replica_killed_under_load_costs_nothing(mesh: LocalMesh, load: Load, process: str) -> None:
    supervisor = mesh.supervisor
    assert supervisor is not None
    wait_until(lambda: _all_serving(mesh), 60, "every process SERVING before the fault")
    before = supervisor.restarts(process)
    start = time.time()
    time.sleep(PRE_S)
    mesh.process(process).crash()
    wait_until(lambda: supervisor.restarts(process) > before, RESTART_BOUND_S, f"supervisor restarts {process}")
    wait_until(lambda: _all_serving(mesh), 60, "every process SERVING after the restart")
    time.sleep(POST_S)
    outcomes = _settled(load, start, time.time())
    bad = [f"{o.code} {o.reason[:200]}" for o in outcomes if o.code != "OK" or o.degraded]
    assert len(outcomes) >= RATE * PRE_S * 0.8
    assert not bad, f"kill -9 {process}: {len(bad)} of {len(outcomes)} failed or degraded, e.g. {bad[:3]}"


def test_redis_master_killed_under_load(mesh: LocalMesh, load: Load) -> None:
    cluster = mesh.redis_cluster
    assert cluster is not None and mesh.supervisor is not None
    wait_until(lambda: _all_serving(mesh) and cluster.healthy(), 60, "mesh and cluster healthy before the fault")
    victim = cluster.master_of(entity_key("user", "u00000"))
    start = time.time()
    time.sleep(PRE_S)
    killed_at = time.time()
    victim.crash()
    wait_until(lambda: mesh.supervisor.restarts(victim.name) >= 1, RESTART_BOUND_S, f"{victim.name} restarted")  # type: ignore[union-attr]
    # The supervisor restarts the node within ~0.5 s, usually before the node timeout (1 s) elects its
    # replica: the master comes back with its append-only file. Either way the cluster is whole again.
    wait_until(cluster.healthy, 30, "cluster healthy again")
    time.sleep(max(0.0, killed_at + REDIS_FAILOVER_WINDOW_S + POST_S - time.time()))
    outcomes = _settled(load, start, time.time())
    errors = [f"{o.code} {o.reason[:200]}" for o in outcomes if o.code != "OK"]
    late = [o.reason for o in outcomes if o.degraded and o.sent_at >= killed_at + REDIS_FAILOVER_WINDOW_S]
    assert not errors, f"errors returned to callers: {errors[:3]}"
    assert not late, f"degraded answers after the failover window: {len(late)}, e.g. {late[:3]}"
    assert len([o for o in outcomes if o.sent_at >= killed_at + REDIS_FAILOVER_WINDOW_S]) >= RATE * POST_S * 0.5
