"""Canary analysis (`decide`) and the controller on a real embedded store and routing file."""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from predmesh.common.rollout import RolloutSpec, rollouts
from services.sink.backends.chdb_store import ChdbStore
from services.sink.core.controller import RolloutController
from services.sink.core.decide import ArmEvidence, Evidence, decide
from services.sink.core.rows import event_row
from services.sink.core.schema import OUTCOME_COLUMNS, PREDICTION_COLUMNS
from tests.sink.support import outcome, prediction

SPEC = RolloutSpec(
    canary="2", steps=(10.0, 50.0, 100.0), min_duration_s=10, min_requests=20, min_outcomes=20, step_started_s=100.0
)
GOOD = ArmEvidence(n=50, p99_ms=10.0, bad_rate=0.0, outcomes=30, auc=0.8)


def test_hold_until_enough_requests_and_time() -> None:
    assert decide(SPEC, "1", Evidence(GOOD, ArmEvidence(n=5)), 200.0).action == "hold"
    assert decide(SPEC, "1", Evidence(GOOD, GOOD), 105.0).action == "hold"  # 5 s < min_duration_s


def test_promote_step_by_step_then_complete() -> None:
    first = decide(SPEC, "1", Evidence(GOOD, GOOD), 111.0)
    assert (first.action, first.weights, first.spec.step) == ("promote", [("1", 50.0), ("2", 50.0)], 1)
    last = decide(first.spec, "1", Evidence(GOOD, GOOD), 122.0)
    assert (last.action, last.weights, last.spec.state) == ("promote", [("2", 100.0)], "promoted")


def test_rollback_within_the_step_on_each_criterion() -> None:
    slow = ArmEvidence(n=50, p99_ms=30.0, outcomes=30, auc=0.8)
    degraded = ArmEvidence(n=50, p99_ms=10.0, bad_rate=0.2, outcomes=30, auc=0.8)
    worse = ArmEvidence(n=50, p99_ms=10.0, outcomes=30, auc=0.5)
    for canary, failed in ((slow, "p99_latency_ms"), (degraded, "bad_rate"), (worse, "auc")):
        d = decide(SPEC, "1", Evidence(GOOD, canary), 101.0)  # before min_duration_s: still rolled back
        assert (d.action, d.weights, d.spec.state) == ("rollback", [("1", 100.0)], "rolled_back")
        assert d.evidence["criteria"][failed]["ok"] is False and failed in d.reason


def test_auc_pending_below_min_outcomes() -> None:
    few = ArmEvidence(n=50, p99_ms=10.0, outcomes=5, auc=0.1)
    d = decide(SPEC, "1", Evidence(GOOD, few), 111.0)
    assert d.action == "promote" and d.evidence["criteria"]["auc"]["pending"] is True


def _insert(store: ChdbStore, events: list) -> None:
    rows = [r for r in (event_row(e) for e in events) if r is not None]
    store.insert("predictions", PREDICTION_COLUMNS, [r.values for r in rows if r.table == "predictions"])
    store.insert("outcomes", OUTCOME_COLUMNS, [r.values for r in rows if r.table == "outcomes"])


def test_controller_starts_then_rolls_back_a_worse_canary(store: ChdbStore, tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    route = {
        "versions": [{"version": "1", "weight": 100}, {"version": "2", "weight": 0}],
        "rollout": {"canary": "2", "steps": [20, 100], "min_duration_s": 3600, "min_requests": 20, "min_outcomes": 20},
    }
    path.write_text(yaml.safe_dump({"models": {"ctl": route}}))
    controller = RolloutController(store, path)
    [(model, started)] = controller.evaluate_once()
    assert (model, started.action) == ("ctl", "start")
    doc = yaml.safe_load(path.read_text())
    assert doc["models"]["ctl"]["versions"] == [{"version": "1", "weight": 80.0}, {"version": "2", "weight": 20.0}]
    assert controller.evaluate_once() == []  # no canary traffic yet: hold
    now = time.time()
    events = []
    for i in range(40):  # stable ranks perfectly, the canary inversely
        y = float(i % 2)
        events += [prediction(f"s{i}", "ctl", "1", "stable", 0.1 + 0.8 * y, at_s=now), outcome(f"s{i}", "ctl", y)]
        events += [prediction(f"c{i}", "ctl", "2", "canary", 0.9 - 0.8 * y, at_s=now), outcome(f"c{i}", "ctl", y)]
    _insert(store, events)
    [(_, decision)] = controller.evaluate_once()
    assert decision.action == "rollback" and "auc" in decision.reason
    doc = yaml.safe_load(path.read_text())
    assert doc["models"]["ctl"]["versions"] == [{"version": "1", "weight": 100.0}]
    assert rollouts(doc)["ctl"].state == "rolled_back"
    rows = store.query("SELECT action, evidence FROM predmesh.rollout_decisions WHERE model = 'ctl' ORDER BY ts").rows
    assert [r[0] for r in rows] == ["start", "rollback"]
    evidence = json.loads(rows[1][1])
    assert evidence["criteria"]["auc"] == {"value": 0.0, "threshold": 0.95, "ok": False, "source": "analytics"}
    assert evidence["evidence_source"] == "analytics" and set(evidence["canary"]["sources"].values()) == {"analytics"}
    # the canary's weight once each decision applied (the report's rollout history)
    assert [json.loads(r[1])["canary_weight_after"] for r in rows] == [20.0, 0.0]
    assert controller.evaluate_once() == []  # finished rollouts are left alone


def test_trace_tree_nests_children_under_parents() -> None:
    from predmesh.cli.trace import span_tree

    spans = [
        {
            "span_id": "a",
            "parent_span_id": "",
            "service": "gw",
            "name": "Predict",
            "start_us": 1000,
            "duration_ms": 5.0,
        },
        {
            "span_id": "c",
            "parent_span_id": "a",
            "service": "inf",
            "name": "Infer",
            "start_us": 3000,
            "duration_ms": 2.0,
        },
        {"span_id": "b", "parent_span_id": "a", "service": "ft", "name": "Get", "start_us": 1500, "duration_ms": 1.0},
        {
            "span_id": "d",
            "parent_span_id": "b",
            "service": "redis",
            "name": "mget",
            "start_us": 1600,
            "duration_ms": 0.5,
        },
    ]
    assert span_tree(spans) == [
        "     0.00 ms      5.00 ms  gw: Predict",
        "     0.50 ms      1.00 ms    ft: Get",
        "     0.60 ms      0.50 ms      redis: mget",
        "     2.00 ms      2.00 ms    inf: Infer",
    ]
