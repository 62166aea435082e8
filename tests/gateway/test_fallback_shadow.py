"""Routing, fallback, breakers and shadow in the predictor core, with small fakes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from predmesh.common.deadline import Deadline
from services.gateway.core.breaker import BreakerRegistry
from services.gateway.core.catalog import ModelCatalog
from services.gateway.core.predictor import Predictor, PredictorLimits
from services.gateway.core.routing import parse_routing
from services.gateway.core.types import PredictInput, Scalar
from services.gateway.errors import DeadlineExceeded, Unavailable
from tests.gateway.fakes import FakeFeatures, FakeModels, ListSink

# Shadow rows wait for drain() (60 s window), so a test sees them scored as one batch.
LIMITS = PredictorLimits(features_timeout_s=0.1, inference_timeout_s=0.5, max_batch_items=64, shadow_max_wait_s=60.0)
FALLBACKS = [
    {"type": "model", "model": "fraud_ctx"},
    {"type": "constant", "score": 0.04, "label": "legit", "scores": [0.96, 0.04]},
]


def routing(**route: object) -> object:
    return parse_routing({"models": {"fraud": route}})


def make(
    features: FakeFeatures | None = None,
    models: FakeModels | None = None,
    route: dict | None = None,
    threshold: int = 100,
    limits: PredictorLimits = LIMITS,
) -> tuple[Predictor, FakeModels, ListSink]:
    models = models or FakeModels()
    sink = ListSink()
    predictor = Predictor(
        features or FakeFeatures(),
        models,
        ModelCatalog(models, 60.0),
        sink,
        limits,
        routing=parse_routing({"models": {"fraud": route or {}}}),
        breakers=BreakerRegistry(threshold, 60.0),
    )
    return predictor, models, sink


def item(entity: str = "u1", amount: float | None = 250.0) -> PredictInput:
    ctx: dict[str, Scalar] = {} if amount is None else {"amount": amount}
    return PredictInput(request_id="r1", model="fraud", version="", entity_id=entity, context=ctx)


async def test_canary_split_in_a_batch_keeps_order() -> None:
    route = {"versions": [{"version": "1", "weight": 50}, {"version": "2", "weight": 50}]}
    predictor, models, _ = make(route=route)
    items = [item(entity=f"e{i}", amount=float(i)) for i in range(40)]
    outs = await predictor.predict_batch("b", "fraud", "", items, Deadline.after(1.0))
    assert [o.entity_id for o in outs] == [f"e{i}" for i in range(40)]
    assert {o.model_version for o in outs} == {"1", "2"}
    assert {o.arm for o in outs if o.model_version == "1"} == {"stable"}
    assert {o.arm for o in outs if o.model_version == "2"} == {"canary"}
    assert sorted(v for _, v, _ in models.infer_calls) == ["1", "2"]  # one call per version group


async def test_features_down_falls_back_to_context_model() -> None:
    predictor, _, sink = make(FakeFeatures(error=Unavailable("redis down")), route={"fallback": FALLBACKS})
    out = await predictor.predict(item(amount=300.0), Deadline.after(1.0))
    assert out.degraded and out.arm == "fallback"
    assert out.degraded_reason == "features_unavailable: served by fraud_ctx:default"
    assert out.model_version == "fraud_ctx:1" and out.score.score == pytest.approx(0.3)
    assert sink.records[-1].degraded and sink.records[-1].arm == "fallback"


async def test_context_model_needs_its_features_else_constant() -> None:
    predictor, _, _ = make(FakeFeatures(error=Unavailable("redis down")), route={"fallback": FALLBACKS})
    out = await predictor.predict(item(amount=None), Deadline.after(1.0))
    assert out.degraded and out.model_version == "constant"
    assert out.score.score == pytest.approx(0.04) and out.score.label == "legit"


async def test_model_down_falls_back_and_no_chain_means_error() -> None:
    predictor, _, _ = make(models=FakeModels(failing={"fraud"}), route={"fallback": FALLBACKS})
    out = await predictor.predict(item(), Deadline.after(1.0))
    assert out.degraded and out.degraded_reason.startswith("model_unavailable")
    bare, _, _ = make(models=FakeModels(failing={"fraud"}))
    with pytest.raises(Unavailable):
        await bare.predict(item(), Deadline.after(1.0))


async def test_every_fallback_failing_returns_the_original_error() -> None:
    models = FakeModels(failing={"fraud", "fraud_ctx"})
    predictor, _, _ = make(models=models, route={"fallback": [{"type": "model", "model": "fraud_ctx"}]})
    with pytest.raises(Unavailable) as info:
        await predictor.predict(item(), Deadline.after(1.0))
    assert "fraud backend down" in info.value.message


async def test_too_little_budget_skips_inference() -> None:
    # 0.3 s left is enough to fetch features but below the 0.5 s minimum for inference.
    limits = replace(LIMITS, min_inference_budget_s=0.5)
    predictor, models, _ = make(route={"fallback": FALLBACKS[1:]}, limits=limits)
    out = await predictor.predict(item(), Deadline.after(0.3))
    assert out.degraded and out.degraded_reason.startswith("deadline_budget")
    assert models.infer_calls == []


async def test_breaker_stops_calls_after_threshold() -> None:
    features = FakeFeatures(error=Unavailable("redis down"))
    predictor, _, _ = make(features, route={"fallback": FALLBACKS[1:]}, threshold=3)
    for _ in range(10):
        out = await predictor.predict(item(), Deadline.after(1.0))
        assert out.degraded
    assert len(features.calls) == 3  # later requests never reached the dead dependency
    assert out.degraded_reason.startswith("features_circuit_open")


async def test_shadow_is_logged_not_returned_and_compared() -> None:
    predictor, models, sink = make(route={"versions": [{"version": "2", "weight": 100}], "shadow": ["3"]})
    outs = [
        await predictor.predict(item(entity=f"e{i}", amount=amount), Deadline.after(1.0))
        for i, amount in enumerate([100.0, 400.0, 800.0])
    ]
    await predictor.drain(1.0)
    assert {o.model_version for o in outs} == {"2"} and {o.arm for o in outs} == {"stable"}
    shadow = [r for r in sink.records if r.arm == "shadow"]
    assert [r.model_version for r in shadow] == ["3", "3", "3"]
    assert [r.score.score for r in shadow] == pytest.approx([0.2, 0.8, 1.6])
    # labels: primary (x/1000 > .5) legit, legit, fraud; shadow (x/500 > .5) legit, fraud, fraud
    assert predictor.metrics.agreement_rate("fraud", "3") == pytest.approx(2 / 3)
    assert ("fraud", "3", 3) in models.infer_calls  # the three shadows were scored in one coalesced batch


async def test_shadow_failure_never_reaches_the_caller() -> None:
    predictor, _, sink = make(route={"shadow": ["9"]})  # version 9 does not exist
    out = await predictor.predict(item(), Deadline.after(1.0))
    await predictor.drain(1.0)
    assert not out.degraded and [r.arm for r in sink.records] == ["stable"]
    errors = predictor.metrics.registry.get_sample_value(
        "predmesh_gateway_shadow_errors_total", {"model": "fraud", "shadow_version": "9"}
    )
    assert errors == 1.0


async def test_live_routing_swap_changes_versions() -> None:
    predictor, _, _ = make(route={"versions": [{"version": "1", "weight": 100}]})
    assert (await predictor.predict(item(), Deadline.after(1.0))).model_version == "1"
    predictor.set_routing(routing(versions=[{"version": "2", "weight": 100}]))  # type: ignore[arg-type]
    assert (await predictor.predict(item(), Deadline.after(1.0))).model_version == "2"


async def test_expired_deadline_is_not_answered_from_fallback() -> None:
    predictor, models, _ = make(route={"fallback": FALLBACKS[1:]})
    with pytest.raises(DeadlineExceeded):
        await predictor.predict(item(), Deadline.after(-0.001))
    assert models.infer_calls == []
