"""A coalesced batch is logged with one emit_many and falls back with one call per fallback step."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import replace

import pytest

from predmesh.clients.logger import LoggerClient
from predmesh.common.deadline import Deadline
from predmesh.v1.events_pb2 import PredictionEvent
from services.gateway.core.breaker import BreakerRegistry
from services.gateway.core.catalog import ModelCatalog
from services.gateway.core.predictor import Predictor
from services.gateway.core.routing import parse_routing
from services.gateway.errors import Unavailable
from services.gateway.transport.logsink import LoggerSink
from tests.gateway.fakes import FakeFeatures, FakeModels
from tests.gateway.test_coalescing import FALLBACKS, LIMITS, item, make


class RecordingLoggerClient(LoggerClient):
    """A LoggerClient that is never started: it keeps what `emit` / `emit_many` were given."""

    def __init__(self) -> None:
        super().__init__("127.0.0.1:1")
        self.singles: list[PredictionEvent] = []
        self.batches: list[list[PredictionEvent]] = []

    def emit(self, event: PredictionEvent) -> bool:
        self.singles.append(event)
        return True

    def emit_many(self, events: Iterable[PredictionEvent]) -> int:
        batch = list(events)
        self.batches.append(batch)
        return len(batch)


def logged_predictor(client: RecordingLoggerClient, features: FakeFeatures | None = None) -> Predictor:
    models = FakeModels()
    return Predictor(
        features or FakeFeatures(),
        models,
        ModelCatalog(models, 60.0),
        LoggerSink(client),
        LIMITS,
        routing=parse_routing({"models": {"fraud": {"fallback": FALLBACKS}}}),
        breakers=BreakerRegistry(100, 60.0),
    )


def comparable(event: PredictionEvent) -> PredictionEvent:
    """The event without what differs between two runs (wall clock, measured latency)."""
    out = PredictionEvent()
    out.CopyFrom(event)
    out.ClearField("timestamp")
    out.ClearField("latency_ms")
    return out


async def test_a_coalesced_batch_of_n_is_one_emit_many_of_n_unchanged_events() -> None:
    client = RecordingLoggerClient()
    features = FakeFeatures()
    predictor = logged_predictor(client, features)
    await asyncio.gather(*(predictor.predict(item(i), Deadline.after(10.0)) for i in range(8)))
    assert len(features.calls) == 1  # one coalesced batch
    assert [len(batch) for batch in client.batches] == [8] and client.singles == []
    # The same requests one at a time: one event each, and the same events field by field.
    alone = RecordingLoggerClient()
    single = logged_predictor(alone)
    for i in range(8):
        await single.predict(item(i), Deadline.after(10.0))
    assert [len(batch) for batch in alone.batches] == [1] * 8
    assert [comparable(e) for e in client.batches[0]] == [comparable(b[0]) for b in alone.batches]
    assert {e.request_id for e in client.batches[0]} == {f"r{i}" for i in range(8)}
    assert all(e.features_hash and e.arm == "stable" and e.prediction.label for e in client.batches[0])


async def test_a_failed_batch_falls_back_with_one_call_per_step_for_all_members() -> None:
    predictor, features, models, sink = make(
        FakeFeatures(error=Unavailable("redis down")), route={"fallback": FALLBACKS}
    )
    requests = [item(i) for i in range(6)]
    requests[1] = replace(requests[1], context={})  # no context: the model step cannot serve it
    requests[4] = replace(requests[4], context={})
    outs = await asyncio.gather(*(predictor.predict(r, Deadline.after(10.0)) for r in requests))
    assert len(features.calls) == 1
    assert models.infer_calls == [("fraud_ctx", "1", 4)]  # one batched Infer for the 4 that have context
    assert [o.request_id for o in outs] == [f"r{i}" for i in range(6)]
    assert all(o.degraded for o in outs)
    assert [o.model_version for o in outs] == [
        "fraud_ctx:1",
        "constant",
        "fraud_ctx:1",
        "fraud_ctx:1",
        "constant",
        "fraud_ctx:1",
    ]
    assert [o.score.score for i, o in enumerate(outs) if i not in (1, 4)] == pytest.approx([0.0, 0.2, 0.3, 0.5])
    assert all(o.degraded_reason.startswith("features_unavailable: served by") for o in outs)
    assert sink.batches == [6]  # every fallback answer of the batch in one log call
    assert {r.request_id for r in sink.records} == {f"r{i}" for i in range(6)}


async def test_a_failed_infer_falls_back_in_one_call_and_a_chain_without_answer_fails_each() -> None:
    models = FakeModels(failing={"fraud"})
    predictor, _, _, _ = make(models=models, route={"fallback": FALLBACKS[:1]})
    requests = [item(1), replace(item(2), context={}), item(3)]
    results = await asyncio.gather(
        *(predictor.predict(r, Deadline.after(10.0)) for r in requests), return_exceptions=True
    )
    assert [call[:2] for call in models.infer_calls] == [("fraud", "2"), ("fraud_ctx", "1")]
    assert models.infer_calls[1][2] == 2
    first, second, third = results
    assert not isinstance(first, BaseException) and first.model_version == "fraud_ctx:1"
    assert not isinstance(third, BaseException) and third.score.score == pytest.approx(0.3)
    assert isinstance(second, Unavailable)  # its chain had no step for it: the original error


async def test_a_shadow_batch_is_logged_with_one_emit_many() -> None:
    route = {"versions": [{"version": "2", "weight": 100}], "shadow": ["3"]}
    predictor, _, models, sink = make(route=route)
    await asyncio.gather(*(predictor.predict(item(i), Deadline.after(10.0)) for i in range(5)))
    await predictor.drain(5.0)
    assert [(v, n) for _, v, n in models.infer_calls] == [("2", 5), ("3", 5)]
    assert sink.batches == [5, 5]
    assert sorted(r.arm for r in sink.records) == ["shadow"] * 5 + ["stable"] * 5


async def test_records_the_sink_refuses_are_counted_as_dropped() -> None:
    predictor, _, _, sink = make()
    sink.capacity = 3
    await asyncio.gather(*(predictor.predict(item(i), Deadline.after(10.0)) for i in range(5)))
    assert sink.batches == [5] and len(sink.records) == 3
    assert predictor.metrics.registry.get_sample_value("predmesh_gateway_log_dropped_total") == 2
