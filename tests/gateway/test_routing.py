from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from services.gateway.core.breaker import CircuitBreaker
from services.gateway.core.routing import RoutingError, RoutingTable, entity_bucket, parse_routing
from services.gateway.core.routing_source import RoutingFileWatcher
from services.gateway.core.types import Score

SPLIT = {
    "models": {
        "fraud": {
            "versions": [{"version": "1", "weight": 90}, {"version": "2", "weight": 10}],
            "shadow": ["3"],
            "shadow_ratio": 0.1,
            "fallback": [
                {"type": "model", "model": "fraud_ctx"},
                {"type": "constant", "score": 0.04, "label": "legit", "scores": [0.96, 0.04]},
            ],
        }
    }
}


def test_parse_full_route() -> None:
    table = parse_routing(SPLIT, "r1")
    route = table.get("fraud")
    assert [(v.version, v.weight) for v in route.versions] == [("1", 90.0), ("2", 10.0)]
    assert route.shadow == ("3",) and route.shadow_ratio == 0.1
    assert route.fallback[0].kind == "model" and route.fallback[0].model == "fraud_ctx"
    assert route.fallback[1].score == Score(0.04, (0.96, 0.04), "legit")
    assert table.get("other").versions == ()  # unknown models route to their default version
    assert parse_routing({"models": {"m": {"shadow": ["2"]}}}).get("m").shadow_ratio == 1.0  # default: all


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        ({"models": {"m": {"versions": [{"version": "1", "weight": 90}]}}}, "sum to 100"),
        (
            {"models": {"m": {"versions": [{"version": "1", "weight": 50}, {"version": "1", "weight": 50}]}}},
            "twice",
        ),
        ({"models": {"m": {"versions": [{"version": "1", "weight": 150}]}}}, "[0, 100]"),
        ({"models": {"m": {"versions": []}}}, "non-empty"),
        ({"models": {"m": {"fallback": [{"type": "magic"}]}}}, "type must be"),
        ({"models": {"m": {"fallback": [{"type": "model", "model": "m"}]}}}, "itself"),
        ({"models": {"m": {"fallback": [{"type": "constant", "score": "high"}]}}}, "score must be"),
        ({"models": {"m": {"typo": 1}}}, "expected"),
        ({"models": {"m": {"shadow": ["2"], "shadow_ratio": 1.5}}}, "shadow_ratio"),
        ({"models": {"m": {"shadow_ratio": True}}}, "shadow_ratio"),
        ({"routes": {}}, "models"),
    ],
)
def test_invalid_documents_name_the_entry(doc: dict, where: str) -> None:
    with pytest.raises(RoutingError) as info:
        parse_routing(doc)
    assert where in str(info.value)


def test_single_version_defaults_to_full_weight() -> None:
    route = parse_routing({"models": {"m": {"versions": [{"version": "7"}]}}}).get("m")
    assert route.assign("anyone") == ("7", "stable")


def test_assignment_is_sticky_and_close_to_weights() -> None:
    route = parse_routing(SPLIT).get("fraud")
    entities = [f"user-{i}" for i in range(20000)]
    first = [route.assign(e) for e in entities]
    assert first == [route.assign(e) for e in entities]
    counts = Counter(version for version, _ in first)
    assert 0.085 < counts["2"] / len(entities) < 0.115
    assert {arm for v, arm in first if v == "1"} == {"stable"}
    assert {arm for v, arm in first if v == "2"} == {"canary"}


def test_weight_change_moves_only_the_needed_entities() -> None:
    before = parse_routing(SPLIT).get("fraud")
    doc = {"models": {"fraud": {"versions": [{"version": "1", "weight": 70}, {"version": "2", "weight": 30}]}}}
    after = parse_routing(doc).get("fraud")
    entities = [f"user-{i}" for i in range(20000)]
    moved = [e for e in entities if before.assign(e)[0] != after.assign(e)[0]]
    # Only stable -> canary moves, and about 20% of entities move.
    assert all(before.assign(e)[0] == "1" and after.assign(e)[0] == "2" for e in moved)
    assert 0.18 < len(moved) / len(entities) < 0.22


def test_buckets_depend_on_model() -> None:
    assert [entity_bucket("a", f"u{i}") for i in range(50)] != [entity_bucket("b", f"u{i}") for i in range(50)]


def test_breaker_opens_probes_and_closes() -> None:
    now = [0.0]
    breaker = CircuitBreaker("x", failure_threshold=2, reset_timeout_s=1.0, clock=lambda: now[0])
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "closed"
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 1.5
    assert breaker.allow()  # the one probe
    assert not breaker.allow()  # no second probe while the first is out
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 3.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow() and breaker.opened_count == 2


def test_breaker_probe_never_reported_does_not_wedge() -> None:
    now = [0.0]
    breaker = CircuitBreaker("x", failure_threshold=1, reset_timeout_s=1.0, clock=lambda: now[0])
    breaker.record_failure()
    now[0] = 1.1
    assert breaker.allow()  # probe sent, caller cancelled: never reports
    now[0] = 2.2
    assert breaker.allow()


async def test_routing_file_watcher_applies_good_and_keeps_last_good(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(SPLIT))
    applied: list[RoutingTable] = []
    results: list[str] = []
    watcher = RoutingFileWatcher(path, applied.append, interval_s=0.01, on_result=results.append)
    await watcher.start()
    try:
        assert applied[-1].get("fraud").versions[1].weight == 10
        good_rev = watcher.revision
        path.write_text("models: {fraud: {versions: [{version: '1', weight: 80}]}}")  # sums to 80
        await asyncio.sleep(0.1)
        assert len(applied) == 1 and "rejected" in results
        assert applied[-1].revision == good_rev
        doc = {"models": {"fraud": {"versions": [{"version": "1", "weight": 50}, {"version": "2", "weight": 50}]}}}
        staged = tmp_path / "routing.yaml.new"
        staged.write_text(yaml.safe_dump(doc))
        staged.replace(path)  # atomic, as kubelet swaps a ConfigMap
        for _ in range(100):
            if len(applied) == 2:
                break
            await asyncio.sleep(0.01)
        assert applied[-1].get("fraud").versions[1].weight == 50
    finally:
        await watcher.stop()


async def test_routing_file_emptied_after_start_keeps_the_last_good_table(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(SPLIT))
    applied: list[RoutingTable] = []
    results: list[str] = []
    watcher = RoutingFileWatcher(path, applied.append, interval_s=0, on_result=results.append)
    await watcher.start()
    path.write_text("")  # what a reader sees between a non-atomic writer's truncate and write
    assert not await watcher.check_now()
    assert results[-1] == "rejected" and len(applied) == 1
    path.write_text("models: {}\n")  # clearing all routes is still possible, explicitly
    assert await watcher.check_now()
    assert applied[-1].routes == {}


async def test_routing_file_invalid_at_start_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text("models: [1, 2]")
    watcher = RoutingFileWatcher(path, lambda t: None)
    with pytest.raises(RoutingError):
        await watcher.start()


def test_eager_list_is_accepted_and_validated_for_the_orchestrator() -> None:
    table = parse_routing({"models": {"fraud": {"versions": [{"version": "1", "weight": 100}], "eager": ["1", 3]}}})
    assert table.get("fraud").versions[0].version == "1"  # the gateway itself ignores eager
    with pytest.raises(RoutingError, match=r"models\.fraud\.eager"):
        parse_routing({"models": {"fraud": {"eager": "1"}}})
