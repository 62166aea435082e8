"""Fault injection under steady load through the edge (Envoy -> 2 gateway replicas -> ...).

One supervised mesh for every fault (`predmesh up`'s LocalMesh). For each fault: a few seconds of
load, the fault (`kill -9` of one process, or SIGTERM of one gateway replica), the supervisor's
restart, recovery to non-degraded answers, a second of steady state. Asserted per fault: errors
returned to callers (0), recovery seconds after the restart (bounded), prediction events lost
(every OK request id is in the `predictions` topic: 0) and duplicates (bounded).

Set PREDMESH_FAULTS_REPORT=path.json to write the measured table (docs/RELIABILITY.md).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from predmesh.local.mesh import LocalMesh, MeshOptions
from predmesh.local.procs import wait_until
from tests.faults.harness import TABLE_HEADER, EventTail, Load, Outcome, PhaseReport, summarize

RATE = 40.0  # requests per second through the edge (CI: 2 shared cores for the whole mesh and the load)
PRE_S = 2.0  # steady load before each fault
POST_S = 1.0  # steady load after recovery
GOOD_STREAK_S = 2.0  # recovered = every answer of this long a window is OK and not degraded
RESTART_BOUND_S = 60.0  # the supervisor restarts any process within this (tritonserver is the slowest)
RECOVERY_BOUND_S = 10.0  # non-degraded answers again within this after the restart
MAX_DUPLICATE_FRACTION = 0.05

# (fault name, process, signal). The broker goes last: its memory storage forgets every record.
FAULTS = [
    ("SIGTERM gateway replica 1 of 2", "gateway-1", signal.SIGTERM),
    ("kill -9 redis", "redis", signal.SIGKILL),
    ("kill -9 ORT worker", "ort-worker-0", signal.SIGKILL),
    ("kill -9 tritonserver", "triton", signal.SIGKILL),
    ("kill -9 logger", "logger", signal.SIGKILL),
    ("kill -9 broker (tansu)", "tansu", signal.SIGKILL),
]
REPORTS: list[PhaseReport] = []
pytestmark = pytest.mark.e2e  # the whole supervised mesh


@pytest.fixture(scope="module")
def fault_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    options = MeshOptions(
        state_dir=Path(tmp_path_factory.mktemp("faults")),
        demo_users=200,
        gateway_replicas=2,
        with_monitor=False,
        extra_env={
            # Budgets for a busy 2-core CI machine, so that only the injected faults cause fallbacks.
            "PREDMESH_GATEWAY_FEATURES_TIMEOUT_MS": "2000",
            "PREDMESH_GATEWAY_INFERENCE_TIMEOUT_MS": "2000",
            "PREDMESH_GATEWAY_DEFAULT_DEADLINE_MS": "4000",
            "PREDMESH_FEATURES_REDIS_TIMEOUT_MS": "1000",
        },
    )
    with LocalMesh(options) as mesh:
        yield mesh


@pytest.fixture(scope="module")
def load(fault_mesh: LocalMesh) -> Iterator[Load]:
    generator = Load(fault_mesh, rate=RATE)
    generator.start()
    try:
        yield generator
    finally:
        generator.stop()


@pytest.fixture(scope="module")
def tail(fault_mesh: LocalMesh) -> Iterator[EventTail]:
    events = EventTail(fault_mesh.bootstrap_servers)
    events.start()
    try:
        yield events
    finally:
        events.stop()


def _all_serving(mesh: LocalMesh) -> bool:
    assert mesh.supervisor is not None
    procs = mesh.supervisor.snapshot()["processes"]
    return all(p["state"] == "running" and p["health"] == "SERVING" for p in procs)


def _recent(load: Load, since: float) -> list[Outcome]:
    """Answers sent in the good-streak window that ends 1 s ago (later ones may still be in flight)."""
    now = time.time()
    return [o for o in load.window(now - GOOD_STREAK_S - 1.0, now - 1.0) if o.sent_at >= since]


def _recovered(load: Load, since: float) -> bool:
    if time.time() - since < GOOD_STREAK_S + 1.0:
        return False
    recent = _recent(load, since)
    if len(recent) < RATE * GOOD_STREAK_S * 0.5 or any(o.code == "PENDING" for o in recent):
        return False  # the machine is too busy to tell: keep waiting
    return all(o.code == "OK" and not o.degraded for o in recent)


def _describe(outcomes: list[Outcome]) -> str:
    kinds = collections.Counter(
        o.code if o.code != "OK" else ("degraded: " + o.reason[:60] if o.degraded else "OK") for o in outcomes
    )
    return ", ".join(f"{k} x{v}" for k, v in kinds.most_common(6))


@pytest.mark.parametrize(("fault", "process", "sig"), FAULTS, ids=[f[1] for f in FAULTS])
def test_fault(
    fault_mesh: LocalMesh, load: Load, tail: EventTail, fault: str, process: str, sig: signal.Signals
) -> None:
    mesh = fault_mesh
    supervisor = mesh.supervisor
    assert supervisor is not None
    wait_until(lambda: _all_serving(mesh), 60, "every process SERVING before the fault")
    before = supervisor.restarts(process)
    start = time.time()
    time.sleep(PRE_S)
    fault_at = time.time()
    mesh.process(process).crash(sig)
    wait_until(lambda: supervisor.restarts(process) > before, RESTART_BOUND_S, f"supervisor restarts {process}")
    restarted_at = time.time()
    if process == "tansu":
        tail.switch_broker()  # the restarted broker starts empty: the logger replays into it
    try:
        wait_until(lambda: _recovered(load, restarted_at), RECOVERY_BOUND_S + GOOD_STREAK_S + 10, "recovery")
    except TimeoutError:
        pytest.fail(f"{fault}: not recovered; last answers: {_describe(_recent(load, restarted_at))}")
    time.sleep(POST_S)
    end = time.time()
    wait_until(lambda: all(o.code != "PENDING" for o in load.window(start, end)), 15, "answers of the window")
    outcomes = load.window(start, end)
    report = summarize(fault, outcomes, restarted_at, fault_at)

    ok_ids = [o.request_id for o in outcomes if o.code == "OK"]
    try:
        wait_until(lambda: all(tail.seen(r) for r in ok_ids), 30, "every OK request's event in the topic")
    except TimeoutError:
        pass  # counted as lost below
    report.lost_ids = [r for r in ok_ids if not tail.seen(r)]
    report.lost = len(report.lost_ids)
    report.duplicates = sum(max(0, tail.seen(r) - 1) for r in ok_ids)
    REPORTS.append(report)
    print("\n" + report.row())
    if process.startswith("gateway") and mesh.envoy is not None:
        print(mesh.envoy.stats(r"cluster\.gateway\.(upstream_rq_retry|upstream_cx_connect_fail|health_check)"))  # type: ignore[attr-defined]

    assert report.sent >= RATE * PRE_S * 0.8
    samples = sorted({f"{o.code}: {o.reason}" for o in outcomes if o.code != "OK"})[:5]
    if report.errors and mesh.envoy is not None:
        samples.append(str(mesh.envoy.stats(r"cluster\.gateway\.(upstream_rq_retry|upstream_cx_connect_fail|health)")))  # type: ignore[attr-defined]
    assert report.errors == {}, f"{fault}: errors returned to callers: {report.errors}, e.g. {samples}"
    assert report.recovery_s <= RECOVERY_BOUND_S, f"{fault}: recovered after {report.recovery_s:.1f}s"
    if process == "tansu":
        # Memory storage: what the old broker had confirmed but our tail had not read yet died with it
        # (the logger committed it). A real Kafka keeps it. Bounded by ~1 s of traffic.
        assert report.lost <= RATE, f"{fault}: {report.lost} events lost, e.g. {report.lost_ids[:5]}"
    else:
        assert report.lost == 0, f"{fault}: {report.lost} events lost, e.g. {report.lost_ids[:5]}"
    assert report.duplicates <= MAX_DUPLICATE_FRACTION * report.sent


def test_write_report() -> None:
    """Print the table (and write it where PREDMESH_FAULTS_REPORT says)."""
    assert len(REPORTS) == len(FAULTS), "run the whole module: every fault adds its row"
    table = "\n".join([TABLE_HEADER, *(r.row() for r in REPORTS)])
    print("\n" + table)
    target = os.environ.get("PREDMESH_FAULTS_REPORT")
    if target:
        Path(target).write_text(json.dumps([r.as_dict() for r in REPORTS], indent=2) + "\n")
