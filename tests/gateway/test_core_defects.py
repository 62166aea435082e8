"""Regression tests of defects found in the gateway core (issue 14, item 6)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from predmesh.common.deadline import Deadline
from services.gateway.core.breaker import BreakerRegistry, CircuitOpen
from services.gateway.core.catalog import ModelCatalog
from services.gateway.core.predictor import Predictor, PredictorLimits, in_request_order
from services.gateway.core.routing import parse_routing
from services.gateway.core.types import (
    FeatureRow,
    InferenceResult,
    ModelDescriptor,
    PredictInput,
    PredictOutput,
    Scalar,
    Score,
    Timings,
)
from services.gateway.errors import NotFound, Unavailable
from tests.gateway.fakes import FakeFeatures, FakeModels, ListSink

LIMITS = PredictorLimits(features_timeout_s=0.1, inference_timeout_s=0.5, max_batch_items=64)
CONSTANT = [{"type": "constant", "score": 0.04, "label": "legit"}]


def make(
    features: FakeFeatures | None = None,
    models: FakeModels | None = None,
    route: dict | None = None,
    threshold: int = 100,
    clock: Any = None,
) -> tuple[Predictor, ListSink]:
    models = models or FakeModels()
    sink = ListSink()
    extra = {"clock": clock} if clock is not None else {}
    predictor = Predictor(
        features or FakeFeatures(),
        models,
        ModelCatalog(models, 60.0),
        sink,
        LIMITS,
        routing=parse_routing({"models": {"fraud": route or {}}}),
        breakers=BreakerRegistry(threshold, 60.0),
        **extra,
    )
    return predictor, sink


def item(entity: str = "u1", amount: float = 250.0) -> PredictInput:
    return PredictInput(request_id="r1", model="fraud", version="", entity_id=entity, context={"amount": amount})


async def test_shadow_answering_the_wrong_number_of_rows_is_counted_not_raised_in_a_task() -> None:
    unhandled: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: unhandled.append(ctx))
    route = {"versions": [{"version": "2", "weight": 100}], "shadow": ["3"]}
    predictor, sink = make(models=FakeModels(extra_score={"3"}), route=route)
    out = await predictor.predict(item(), Deadline.after(1.0))
    await predictor.drain(1.0)
    assert not out.degraded and [r.arm for r in sink.records] == ["stable"]
    errors = predictor.metrics.registry.get_sample_value(
        "predmesh_gateway_shadow_errors_total", {"model": "fraud", "shadow_version": "3"}
    )
    assert errors == 1.0 and unhandled == []


async def test_features_answering_the_wrong_number_of_rows_goes_through_breaker_and_fallback() -> None:
    features = FakeFeatures(drop_rows=1)
    predictor, _ = make(features, route={"fallback": CONSTANT}, threshold=2)
    first = await predictor.predict(item(), Deadline.after(1.0))
    assert first.degraded and first.degraded_reason.startswith("features_unavailable")
    await predictor.predict(item(), Deadline.after(1.0))
    third = await predictor.predict(item(), Deadline.after(1.0))
    assert third.degraded_reason.startswith("features_circuit_open")  # the breaker counted both failures
    assert len(features.calls) == 2


async def test_inference_answering_the_wrong_number_of_scores_goes_to_the_fallback() -> None:
    predictor, _ = make(models=FakeModels(extra_score={"2"}), route={"fallback": CONSTANT})
    out = await predictor.predict(item(), Deadline.after(1.0))
    assert out.degraded and out.degraded_reason == "model_unavailable: served by constant"


class Clock:
    """A clock that moves only when the fakes below say their work took time."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class SlowLookupModels(FakeModels):
    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    async def describe(self, model: str, version: str, timeout_s: float) -> ModelDescriptor:
        self.clock.now += 1.0  # a slow model lookup (a catalog miss)
        return await super().describe(model, version, timeout_s)

    async def infer(
        self,
        model: str,
        version: str,
        features: Sequence[str],
        rows: Sequence[Sequence[Scalar]],
        request_id: str,
        timeout_s: float,
        priority: int = 0,
    ) -> InferenceResult:
        self.clock.now += 0.5
        return await super().infer(model, version, features, rows, request_id, timeout_s, priority)


class SlowFeatures(FakeFeatures):
    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    async def get(
        self,
        entity_type: str,
        entities: Sequence[tuple[str, dict[str, Scalar]]],
        features: Sequence[str],
        timeout_s: float,
        related: Sequence[Mapping[str, str]] | None = None,
    ) -> list[FeatureRow]:
        self.clock.now += 0.25
        return await super().get(entity_type, entities, features, timeout_s, related)


async def test_features_ms_is_the_feature_fetch_only_not_the_model_lookup() -> None:
    clock = Clock()
    predictor, _ = make(SlowFeatures(clock), SlowLookupModels(clock), clock=clock)
    out = await predictor.predict(item(), Deadline.after(10.0))
    assert out.timings.features_ms == pytest.approx(250.0)
    assert out.timings.inference_ms == pytest.approx(500.0)
    assert out.timings.total_ms == pytest.approx(1750.0)  # the lookup counts in the total only


def test_an_unanswered_item_is_a_bug_not_a_shorter_answer() -> None:
    out = PredictOutput("r", "fraud", "1", "u1", Score(0.1), "stable", Timings())  # type: ignore[arg-type]
    assert in_request_order(2, [([1], [out]), ([0], [out])]) == [out, out]
    with pytest.raises(AssertionError, match=r"no answer for items \[1\]"):
        in_request_order(2, [([0], [out])])


async def test_breaker_call_counts_dependency_failures_and_malformed_answers_only() -> None:
    states: list[tuple[str, bool]] = []
    breakers = BreakerRegistry(2, 60.0, on_state=lambda key, is_open: states.append((key, is_open)))

    async def down() -> int:
        raise Unavailable("down")

    async def missing() -> int:
        raise NotFound("no such model")

    async def one() -> int:
        return 1

    def want_two(got: int) -> None:
        if got != 2:
            raise Unavailable("wrong count")

    for _ in range(3):
        with pytest.raises(NotFound):
            await breakers.call("dep", missing)  # a caller error is not the dependency failing
    assert breakers.get("dep").state == "closed"
    with pytest.raises(Unavailable):
        await breakers.call("dep", down)
    with pytest.raises(Unavailable):
        await breakers.call("dep", one, want_two)  # a malformed answer is a failure
    calls = 0

    async def counted() -> int:
        nonlocal calls
        calls += 1
        return 2

    with pytest.raises(CircuitOpen):
        await breakers.call("dep", counted)
    assert calls == 0 and states[-1] == ("dep", True)
