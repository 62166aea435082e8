"""Honest answers: stored features missing -> degraded/features_missing (per-model tolerance);
NaN/inf context values -> INVALID_ARGUMENT naming the field."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from predmesh.common.deadline import Deadline
from predmesh.common.errors import InvalidArgument
from predmesh.v1 import common_pb2, prediction_pb2
from services.gateway.core.catalog import ModelCatalog
from services.gateway.core.degradation import FEATURES_MISSING
from services.gateway.core.predictor import Predictor, PredictorLimits
from services.gateway.core.routing import parse_routing
from services.gateway.core.types import FeatureRow, PredictInput, Scalar
from services.gateway.transport.converters import predict_input, predict_response
from services.gateway.transport.logsink import record_to_event
from tests.gateway.fakes import FakeFeatures, FakeModels, ListSink

LIMITS = PredictorLimits(features_timeout_s=0.1, inference_timeout_s=0.5, max_batch_items=4)


class StoreWithGhosts(FakeFeatures):
    """Entities whose id starts with 'ghost' are not in the store: their stored feature is defaulted."""

    async def get(
        self,
        entity_type: str,
        entities: Sequence[tuple[str, dict[str, Scalar]]],
        features: Sequence[str],
        timeout_s: float,
        related: Sequence[Mapping[str, str]] | None = None,
    ) -> list[FeatureRow]:
        rows = await super().get(entity_type, entities, features, timeout_s, related)
        return [
            FeatureRow(
                entity_id=row.entity_id,
                values=row.values,
                missing=(*row.missing, "country"),
                entity_unknown=True,
                store_missing=("country",),
            )
            if row.entity_id.startswith("ghost")
            else FeatureRow(entity_id=row.entity_id, values=row.values, missing=row.missing, stale=("country",))
            if row.entity_id.startswith("old")
            else row
            for row in rows
        ]


def _predictor(routing: dict | None = None, sink: ListSink | None = None) -> Predictor:
    models = FakeModels()
    table = parse_routing(routing) if routing else parse_routing(None)
    return Predictor(StoreWithGhosts(), models, ModelCatalog(models, 60.0), sink, LIMITS, routing=table)


def _item(entity: str) -> PredictInput:
    return PredictInput(request_id="r1", model="fraud", version="", entity_id=entity, context={"amount": 100.0})


async def test_an_entity_missing_from_the_store_is_a_degraded_answer() -> None:
    sink = ListSink()
    out = await _predictor(sink=sink).predict(_item("ghost-1"), Deadline.after(1.0))
    assert out.degraded and out.degraded_reason == FEATURES_MISSING
    assert out.missing_features == ("country",) and "country" in out.defaulted_features
    assert out.arm == "stable"  # still scored by the requested model, on defaults
    assert sink.records[0].degraded and sink.records[0].degraded_reason == FEATURES_MISSING
    response = predict_response(out)
    assert response.degraded and list(response.missing_features) == ["country"]


async def test_a_known_entity_is_not_degraded() -> None:
    out = await _predictor().predict(_item("u1"), Deadline.after(1.0))
    assert not out.degraded and out.degraded_reason == "" and out.missing_features == ()


async def test_stale_stored_features_are_listed_but_not_degraded() -> None:
    sink = ListSink()
    out = await _predictor(sink=sink).predict(_item("old-1"), Deadline.after(1.0))
    assert not out.degraded and out.stale_features == ("country",) and "country" in out.defaulted_features
    assert list(predict_response(out).stale_features) == ["country"]
    assert sink.records[0].stale_features == ("country",)
    assert list(record_to_event(sink.records[0]).stale_features) == ["country"]


async def test_a_model_may_tolerate_a_few_missing_stored_features() -> None:
    routing = {"models": {"fraud": {"max_missing_features": 1}}}
    out = await _predictor(routing).predict(_item("ghost-2"), Deadline.after(1.0))
    assert not out.degraded and out.missing_features == ("country",)


def test_the_tolerance_must_be_a_non_negative_integer() -> None:
    from services.gateway.core.routing import RoutingError

    with pytest.raises(RoutingError, match=r"models\.fraud\.max_missing_features"):
        parse_routing({"models": {"fraud": {"max_missing_features": -1}}})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_nan_or_infinite_context_value_is_invalid_argument_naming_the_field(bad: float) -> None:
    request = prediction_pb2.PredictRequest(
        model="fraud", entity_id="u1", context={"amount": common_pb2.Value(number_value=bad)}
    )
    with pytest.raises(InvalidArgument, match=r"context\['amount'\]"):
        predict_input(request)
