"""Several entity types per request: PredictRequest/BatchItem `entities` reach the feature fetch as `related`
(one call for all groups) and the prediction log; bad entity maps are INVALID_ARGUMENT."""

from __future__ import annotations

from dataclasses import replace

import pytest

from predmesh.common.deadline import Deadline
from predmesh.common.errors import InvalidArgument
from predmesh.v1 import prediction_pb2
from services.gateway.core.catalog import ModelCatalog
from services.gateway.core.predictor import Predictor, PredictorLimits
from services.gateway.core.types import PredictInput
from services.gateway.transport.converters import batch_inputs, predict_input
from services.gateway.transport.logsink import record_to_event
from tests.gateway.fakes import FakeFeatures, FakeModels, ListSink

LIMITS = PredictorLimits(features_timeout_s=0.1, inference_timeout_s=0.5, max_batch_items=4)


def make() -> tuple[Predictor, FakeFeatures, ListSink]:
    features, models, sink = FakeFeatures(), FakeModels(), ListSink()
    return Predictor(features, models, ModelCatalog(models, 60.0), sink, LIMITS), features, sink


def test_entities_are_read_from_predict_and_batch_requests() -> None:
    single = predict_input(prediction_pb2.PredictRequest(model="fraud", entity_id="u1", entities={"merchant": "m1"}))
    assert single.entities == {"merchant": "m1"}
    batch = batch_inputs(
        prediction_pb2.PredictBatchRequest(
            model="fraud",
            items=[prediction_pb2.BatchItem(entity_id="u1", entities={"merchant": "m2"}), {"entity_id": "u2"}],
        )
    )
    assert [it.entities for it in batch] == [{"merchant": "m2"}, {}]


async def test_entities_reach_the_feature_fetch_and_the_log() -> None:
    predictor, features, sink = make()
    item = PredictInput("r1", "fraud", "", "u1", {"amount": 1.0}, entities={"merchant": "m1"})
    out = await predictor.predict(item, Deadline.after(1.0))
    assert features.related == [[{"merchant": "m1"}]]
    assert out.entities == {"merchant": "m1"}
    assert dict(record_to_event(sink.records[0]).entities) == {"merchant": "m1"}


async def test_a_batch_sends_every_items_entities_aligned_in_one_call() -> None:
    predictor, features, _ = make()
    items = [
        PredictInput("r1", "fraud", "", "u1", {"amount": 1.0}, entities={"merchant": "m1"}),
        PredictInput("r1", "fraud", "", "u2", {"amount": 2.0}),
    ]
    await predictor.predict_batch("r1", "fraud", "", items, Deadline.after(1.0))
    assert features.related == [[{"merchant": "m1"}, {}]]


async def test_without_entities_the_fetch_is_unchanged() -> None:
    predictor, features, _ = make()
    await predictor.predict(PredictInput("r1", "fraud", "", "u1", {"amount": 1.0}), Deadline.after(1.0))
    assert features.related == [None]


@pytest.mark.parametrize("entities", [{"merchant": ""}, {"": "m1"}, {"merchant": "x" * 300}])
async def test_bad_entities_are_invalid_argument(entities: dict[str, str]) -> None:
    predictor, features, _ = make()
    item = replace(PredictInput("r1", "fraud", "", "u1", {"amount": 1.0}), entities=entities)
    with pytest.raises(InvalidArgument, match="entities"):
        await predictor.predict(item, Deadline.after(1.0))
    assert features.calls == []
