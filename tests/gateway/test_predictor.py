from __future__ import annotations

from dataclasses import replace

import pytest

from predmesh.common.deadline import Deadline
from predmesh.common.errors import DeadlineExceeded, InvalidArgument, NotFound, Unavailable
from services.gateway.core.catalog import ModelCatalog
from services.gateway.core.hashing import features_hash
from services.gateway.core.predictor import Predictor, PredictorLimits
from services.gateway.core.types import PredictInput, Scalar
from tests.gateway.fakes import FEATURES, FakeFeatures, FakeModels, ListSink

LIMITS = PredictorLimits(features_timeout_s=0.1, inference_timeout_s=0.5, max_batch_items=4)


def make(features: FakeFeatures | None = None, sink: ListSink | None = None) -> tuple[Predictor, FakeModels]:
    models = FakeModels()
    predictor = Predictor(features or FakeFeatures(), models, ModelCatalog(models, 60.0), sink, LIMITS)
    return predictor, models


def item(entity: str = "u1", amount: float | None = 250.0, model: str = "fraud", version: str = "") -> PredictInput:
    ctx: dict[str, Scalar] = {} if amount is None else {"amount": amount}
    return PredictInput(request_id="r1", model=model, version=version, entity_id=entity, context=ctx)


async def test_predict_scores_logs_and_reports_timings() -> None:
    sink = ListSink()
    predictor, _ = make(sink=sink)
    out = await predictor.predict(item(), Deadline.after(1.0))
    assert out.score.score == pytest.approx(0.25)
    assert out.model_version == "2" and out.arm == "stable"
    assert out.timings.total_ms >= out.timings.features_ms >= 0
    assert [r.request_id for r in sink.records] == ["r1"]
    assert sink.records[0].features_hash == features_hash(FEATURES, (250.0, "US"))


async def test_version_pin_is_passed_and_marked() -> None:
    predictor, models = make()
    out = await predictor.predict(item(version="1"), Deadline.after(1.0))
    assert out.model_version == "1" and out.arm == "pinned"
    assert models.infer_calls == [("fraud", "1", 1)]


async def test_defaulted_features_are_reported() -> None:
    predictor, _ = make()
    out = await predictor.predict(item(amount=None), Deadline.after(1.0))
    assert out.defaulted_features == ("amount",)


async def test_feature_timeout_is_capped_by_setting() -> None:
    features = FakeFeatures()
    predictor, _ = make(features)
    await predictor.predict(item(), Deadline.after(5.0))
    assert features.calls[0][3] <= LIMITS.features_timeout_s


@pytest.mark.parametrize(
    "bad",
    [
        item(entity=""),
        item(model=""),
        item(model="bad model!"),
        item(entity="x" * 300),
        item(version="1 2"),
    ],
)
async def test_bad_input_is_invalid_argument(bad: PredictInput) -> None:
    predictor, _ = make()
    with pytest.raises(InvalidArgument):
        await predictor.predict(bad, Deadline.after(1.0))


async def test_unknown_model_is_not_found() -> None:
    predictor, _ = make()
    with pytest.raises(NotFound):
        await predictor.predict(item(model="nope"), Deadline.after(1.0))


async def test_expired_deadline_is_deadline_exceeded() -> None:
    predictor, models = make()
    with pytest.raises(DeadlineExceeded):
        await predictor.predict(item(), Deadline.after(-0.001))
    assert models.infer_calls == []


async def test_upstream_unavailable_propagates_and_logs_nothing() -> None:
    sink = ListSink()
    predictor, _ = make(FakeFeatures(error=Unavailable("redis down")), sink)
    with pytest.raises(Unavailable):
        await predictor.predict(item(), Deadline.after(1.0))
    assert sink.records == []


async def test_batch_keeps_order_and_uses_one_call_each() -> None:
    features = FakeFeatures()
    predictor, models = make(features)
    items = [item(entity=f"u{i}", amount=float(i * 100)) for i in range(4)]
    outs = await predictor.predict_batch("b1", "fraud", "", items, Deadline.after(1.0))
    assert [o.entity_id for o in outs] == ["u0", "u1", "u2", "u3"]
    assert [o.score.score for o in outs] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert [o.request_id for o in outs] == ["b1/0", "b1/1", "b1/2", "b1/3"]
    assert len(features.calls) == 1 and models.infer_calls == [("fraud", "2", 4)]


async def test_batch_upstream_timeouts_grow_with_the_batch_within_the_deadline() -> None:
    limits = replace(LIMITS, features_timeout_per_item_s=0.01, inference_timeout_per_item_s=0.02)
    features = FakeFeatures()
    models = FakeModels()
    predictor = Predictor(features, models, ModelCatalog(models, 60.0), ListSink(), limits)
    items = [item(entity=f"u{i}") for i in range(4)]
    await predictor.predict_batch("b1", "fraud", "", items[:1], Deadline.after(5.0))
    await predictor.predict_batch("b2", "fraud", "", items, Deadline.after(5.0))
    (_, _, _, one_features), (_, _, _, four_features) = features.calls
    assert one_features == pytest.approx(0.1, abs=1e-3)  # one entity: the base bound
    assert four_features == pytest.approx(0.1 + 3 * 0.01, abs=1e-3)
    assert models.infer_timeouts == pytest.approx([0.5, 0.5 + 3 * 0.02], abs=1e-3)
    # A short request deadline still wins over the scaled bound.
    await predictor.predict_batch("b3", "fraud", "", items, Deadline.after(0.05))
    assert features.calls[-1][3] <= 0.05


async def test_batch_limits() -> None:
    predictor, _ = make()
    with pytest.raises(InvalidArgument):
        await predictor.predict_batch("b", "fraud", "", [], Deadline.after(1.0))
    with pytest.raises(InvalidArgument):
        await predictor.predict_batch("b", "fraud", "", [item()] * 5, Deadline.after(1.0))


async def test_model_descriptions_are_cached() -> None:
    predictor, models = make()
    for _ in range(3):
        await predictor.predict(item(), Deadline.after(1.0))
    assert models.describe_calls == 1


async def test_full_sink_drops_without_failing_the_request() -> None:
    sink = ListSink(capacity=0)
    predictor, _ = make(sink=sink)
    out = await predictor.predict(item(), Deadline.after(1.0))
    assert out.score.score == pytest.approx(0.25) and sink.records == []


def test_features_hash_is_type_sensitive_and_stable() -> None:
    a = features_hash(["x", "y"], [1.0, "1"])
    assert a == features_hash(["x", "y"], [1.0, "1"])
    assert a != features_hash(["x", "y"], [True, "1"])
    assert a != features_hash(["x", "y"], ["1.0", "1"])
    assert len(a) == 64
