"""GetModelHealth's core: the answer statistics window and the report assembled from its ports."""

from __future__ import annotations

import pytest

from predmesh.common.errors import NotFound, Unavailable
from services.gateway.core.breaker import BreakerRegistry
from services.gateway.core.model_health import ModelHealthReporter, VersionInfo
from services.gateway.core.model_stats import ModelStats
from services.gateway.core.routing import RoutingTable, parse_routing
from tests.gateway.fakes import FakeFeatures


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_stats_give_last_and_p99_latency_and_the_degraded_ratio_of_the_window() -> None:
    clock = Clock()
    stats = ModelStats(window_s=60, clock=clock)
    for ms in range(1, 101):  # 1..100 ms
        stats.record("fraud", float(ms), degraded=ms % 4 == 0)
    stats.record("fraud", 0.0, degraded=True)  # a constant fallback: no inference, still an answer
    summary = stats.summary("fraud")
    assert summary.last_inference_ms == 100.0 and summary.p99_inference_ms == 99.0
    assert summary.requests == 101 and summary.degraded == 26
    assert stats.summary("other").requests == 0

    clock.now += 61  # everything left the window
    stats.record("fraud", 5.0, degraded=False)
    summary = stats.summary("fraud")
    assert (summary.requests, summary.degraded_ratio, summary.p99_inference_ms) == (1, 0.0, 5.0)


def test_stats_memory_is_bounded() -> None:
    stats = ModelStats(window_s=60, max_samples=10, clock=Clock())
    for _ in range(100):
        stats.record("fraud", 1.0, degraded=False)
    assert stats.summary("fraud").requests == 10


class Inventory:
    def __init__(self, versions: dict[str, str], missing: set[str] | None = None, down: bool = False) -> None:
        self._versions = versions  # version -> kind
        self._missing = missing or set()
        self._down = down

    async def versions(self, model: str, timeout_s: float) -> tuple[str, ...]:
        if self._down:
            raise Unavailable("inference unavailable")
        if model != "fraud":
            raise NotFound(f"unknown model {model!r}")
        return tuple(v for v in self._versions if v not in self._missing)

    async def describe(self, model: str, version: str, timeout_s: float) -> VersionInfo:
        if self._down:
            raise Unavailable("inference unavailable")
        if version in self._missing or version not in self._versions:
            raise NotFound(f"unknown version {version!r}")
        return VersionInfo(version, self._versions[version], "user", ("amount", "country"))


ROUTING = parse_routing(
    {
        "models": {
            "fraud": {
                "versions": [{"version": "1", "weight": 90}, {"version": "2", "weight": 10}],
                "shadow": ["3"],
                "fallback": [{"type": "model", "model": "fraud_ctx"}, {"type": "constant", "score": 0.1}],
            }
        }
    }
)


def reporter(
    inventory: Inventory, features: FakeFeatures, stats: ModelStats | None = None, table: RoutingTable = ROUTING
) -> tuple[ModelHealthReporter, BreakerRegistry]:
    breakers = BreakerRegistry(failure_threshold=1, reset_timeout_s=60)
    return ModelHealthReporter(inventory, features, breakers, stats or ModelStats(), lambda: table), breakers


async def test_a_healthy_model_reports_versions_weights_features_and_stats() -> None:
    stats = ModelStats()
    stats.record("fraud", 4.0, degraded=False)
    stats.record("fraud", 6.0, degraded=True)
    features = FakeFeatures()
    health, _ = reporter(Inventory({"1": "xgboost", "2": "xgboost", "3": "xgboost"}), features, stats)
    h = await health.report("fraud", 1.0)
    assert h.healthy and h.feature_store_reachable and h.feature_store_error == ""
    assert [(v.version, v.weight_percent, v.roles, v.loaded, v.kind) for v in h.versions] == [
        ("1", 90.0, ("stable",), True, "xgboost"),
        ("2", 10.0, ("canary",), True, "xgboost"),
        ("3", 0.0, ("shadow",), True, "xgboost"),
    ]
    assert (h.last_inference_ms, h.requests_in_window, h.degraded_ratio) == (6.0, 2, 0.5)
    assert h.fallback == ("fraud_ctx:default", "constant") and h.breakers == {"features": "closed"}
    (entity_type, entities, wanted, _) = features.calls[0]  # the probe read the model's entity type
    assert entity_type == "user" and wanted == ("amount", "country") and len(entities) == 1


async def test_an_unreachable_store_an_unloaded_version_and_an_open_breaker_are_reported() -> None:
    health, breakers = reporter(Inventory({"1": "xgboost"}, missing={"2"}), FakeFeatures(Unavailable("down")))
    breakers.get("model:fraud:1").record_failure()  # threshold 1: open
    h = await health.report("fraud", 1.0)
    assert not h.healthy
    assert not h.feature_store_reachable and h.feature_store_error == "UNAVAILABLE"
    v2 = next(v for v in h.versions if v.version == "2")
    assert not v2.loaded and v2.error == "NOT_FOUND"
    assert next(v for v in h.versions if v.version == "1").breaker == "open"
    assert h.breakers["model:fraud:1"] == "open"


async def test_an_unreachable_orchestrator_is_reported_not_raised() -> None:
    health, _ = reporter(Inventory({}, down=True), FakeFeatures())
    h = await health.report("fraud", 1.0)
    assert not h.healthy and all(not v.loaded and v.error == "UNAVAILABLE" for v in h.versions)
    assert h.feature_store_error == "NO_MODEL_VERSION"  # nothing says which entity type to probe


async def test_an_unknown_model_is_not_found() -> None:
    health, _ = reporter(Inventory({"1": "xgboost"}), FakeFeatures())
    with pytest.raises(NotFound):
        await health.report("nope", 1.0)
