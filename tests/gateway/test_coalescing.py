"""Coalescing of concurrent requests in the predictor core (one upstream call for many requests)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import replace

import pytest
from opentelemetry import trace

from predmesh.common import telemetry
from predmesh.common.deadline import Deadline
from services.gateway.core.breaker import BreakerRegistry
from services.gateway.core.catalog import ModelCatalog
from services.gateway.core.predictor import Predictor, PredictorLimits
from services.gateway.core.priority import Priority
from services.gateway.core.routing import parse_routing
from services.gateway.core.types import FeatureRow, PredictInput, Scalar
from services.gateway.errors import DeadlineExceeded, NotFound, Unavailable
from tests.common.tracing_support import memory_exporter
from tests.gateway.fakes import FakeFeatures, FakeModels, ListSink

# A 60 s window: a batch leaves early only because the path is idle or the batch is full.
LIMITS = PredictorLimits(
    features_timeout_s=0.1,
    inference_timeout_s=0.5,
    max_batch_items=64,
    coalesce_max_rows=64,
    coalesce_max_wait_s=60.0,
    shadow_max_wait_s=60.0,
)
FALLBACKS = [
    {"type": "model", "model": "fraud_ctx"},
    {"type": "constant", "score": 0.04, "label": "legit", "scores": [0.96, 0.04]},
]


def make(
    features: FakeFeatures | None = None,
    models: FakeModels | None = None,
    route: dict | None = None,
    limits: PredictorLimits = LIMITS,
    seed: int = 0,
) -> tuple[Predictor, FakeFeatures, FakeModels, ListSink]:
    features = features or FakeFeatures()
    models = models or FakeModels()
    sink = ListSink()
    predictor = Predictor(
        features,
        models,
        ModelCatalog(models, 60.0),
        sink,
        limits,
        routing=parse_routing({"models": {"fraud": route or {}}}),
        breakers=BreakerRegistry(100, 60.0),
        shadow_rng=random.Random(seed),
    )
    return predictor, features, models, sink


def item(i: int, amount: float | None = None, version: str = "") -> PredictInput:
    ctx: dict[str, Scalar] = {"amount": float(100 * i) if amount is None else amount}
    return PredictInput(request_id=f"r{i}", model="fraud", version=version, entity_id=f"u{i}", context=ctx)


def sample(predictor: Predictor, name: str, **labels: str) -> float:
    return predictor.metrics.registry.get_sample_value(name, labels) or 0.0


async def settle() -> None:
    """Let every ready task run up to its next real wait."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_concurrent_requests_share_one_features_and_one_infer_call() -> None:
    predictor, features, models, sink = make()
    outs = await asyncio.gather(*(predictor.predict(item(i), Deadline.after(10.0)) for i in range(8)))
    assert len(features.calls) == 1 and [e for e, _ in features.calls[0][1]] == [f"u{i}" for i in range(8)]
    assert models.infer_calls == [("fraud", "2", 8)]
    # Every member keeps its own id, entity and score: the same answers as one request at a time.
    alone, _, _, _ = make()
    singles = [await alone.predict(item(i), Deadline.after(10.0)) for i in range(8)]
    assert [(o.request_id, o.entity_id, o.score, o.model_version, o.arm) for o in outs] == [
        (o.request_id, o.entity_id, o.score, o.model_version, o.arm) for o in singles
    ]
    assert sorted(r.request_id for r in sink.records) == sorted(f"r{i}" for i in range(8))
    assert sample(predictor, "predmesh_gateway_batch_rows_sum", model="fraud", path="primary") == 8
    assert sample(predictor, "predmesh_gateway_window_wait_seconds_count", model="fraud", path="primary") == 8


async def test_a_lone_request_is_not_held_by_the_window() -> None:
    # With a 60 s window, an answer within the 10 s deadline means the idle path sent at once.
    predictor, features, _, _ = make()
    out = await predictor.predict(item(1), Deadline.after(10.0))
    assert not out.degraded and out.score.score == pytest.approx(0.1)
    assert len(features.calls) == 1


async def test_arrivals_during_an_inflight_batch_go_together_in_the_next() -> None:
    features = FakeFeatures()
    features.gate = asyncio.Event()
    predictor, _, models, _ = make(features)
    first = asyncio.create_task(predictor.predict(item(0), Deadline.after(10.0)))
    await settle()
    assert len(features.calls) == 1  # the idle path sent the lone request at once
    rest = [asyncio.create_task(predictor.predict(item(i), Deadline.after(10.0))) for i in range(1, 6)]
    await settle()
    assert len(features.calls) == 1  # held while the first batch is in flight
    features.gate.set()
    outs = await asyncio.gather(first, *rest)
    assert [len(call[1]) for call in features.calls] == [1, 5]
    assert models.infer_calls == [("fraud", "2", 1), ("fraud", "2", 5)]
    assert [o.entity_id for o in outs] == [f"u{i}" for i in range(6)]


async def test_a_full_batch_leaves_at_once() -> None:
    predictor, features, _, _ = make(limits=replace(LIMITS, coalesce_max_rows=4))
    await asyncio.gather(*(predictor.predict(item(i), Deadline.after(10.0)) for i in range(10)))
    assert [len(call[1]) for call in features.calls] == [4, 4, 2]


async def test_predict_batch_chunks_use_the_same_batches() -> None:
    predictor, _features, models, _ = make(limits=replace(LIMITS, coalesce_max_rows=8))
    batch = [item(i) for i in range(3)]
    outs, single = await asyncio.gather(
        predictor.predict_batch("b", "fraud", "", batch, Deadline.after(10.0)),
        predictor.predict(item(7), Deadline.after(10.0)),
    )
    assert models.infer_calls == [("fraud", "2", 4)]  # one PredictBatch and one Predict, one call
    assert [o.request_id for o in outs] == ["b/0", "b/1", "b/2"] and single.request_id == "r7"
    # A PredictBatch larger than a batch is cut into chunks; the order of answers is kept.
    chunked, _, chunk_models, _ = make(limits=replace(LIMITS, coalesce_max_rows=3))
    outs = await chunked.predict_batch("c", "fraud", "", [item(i) for i in range(7)], Deadline.after(10.0))
    assert [n for _, _, n in chunk_models.infer_calls] == [3, 3, 1]
    assert [o.request_id for o in outs] == [f"c/{i}" for i in range(7)]
    assert [o.score.score for o in outs] == pytest.approx([i / 10 for i in range(7)])


async def test_a_member_past_its_deadline_does_not_cancel_the_others() -> None:
    features = FakeFeatures()
    features.gate = asyncio.Event()
    predictor, _, _, _ = make(features)
    hurried = asyncio.create_task(predictor.predict(item(1), Deadline.after(0.2)))
    patient = asyncio.create_task(predictor.predict(item(2), Deadline.after(10.0)))
    with pytest.raises(DeadlineExceeded):
        await hurried
    assert not patient.done()
    features.gate.set()
    out = await patient
    assert not out.degraded and out.score.score == pytest.approx(0.2)
    assert len(features.calls) == 1 and len(features.calls[0][1]) == 2


async def test_the_batched_call_gets_the_latest_member_deadline() -> None:
    predictor, features, _, _ = make(limits=replace(LIMITS, features_timeout_s=30.0))
    await asyncio.gather(
        predictor.predict(item(1), Deadline.after(1.0)), predictor.predict(item(2), Deadline.after(5.0))
    )
    assert 1.0 < features.calls[0][3] <= 5.0


async def test_a_failed_batch_answers_each_member_through_its_own_fallback() -> None:
    features = FakeFeatures(error=Unavailable("redis down"))
    predictor, _, _, sink = make(features, route={"fallback": FALLBACKS})
    with_context, without = await asyncio.gather(
        predictor.predict(item(3), Deadline.after(10.0)),
        predictor.predict(replace(item(4), context={}), Deadline.after(10.0)),
    )
    assert len(features.calls) == 1  # one batched call failed for both
    assert with_context.degraded and with_context.model_version == "fraud_ctx:1"
    assert with_context.score.score == pytest.approx(0.3) and with_context.request_id == "r3"
    assert without.degraded and without.model_version == "constant" and without.request_id == "r4"
    assert {r.request_id: r.arm for r in sink.records} == {"r3": "fallback", "r4": "fallback"}


async def test_a_caller_error_reaches_every_member_as_such(caplog: pytest.LogCaptureFixture) -> None:
    predictor, features, _, _ = make()
    results = await asyncio.gather(
        *(predictor.predict(replace(item(i), model="nope"), Deadline.after(10.0)) for i in range(3)),
        return_exceptions=True,
    )
    assert [type(r) for r in results] == [NotFound] * 3 and features.calls == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # not logged as a failed batch


async def test_shadow_sampling_ratio_is_respected() -> None:
    route = {"versions": [{"version": "2", "weight": 100}], "shadow": ["3"], "shadow_ratio": 0.25}
    predictor, _, _, sink = make(route=route, seed=7)
    for i in range(200):
        await predictor.predict(item(i), Deadline.after(10.0))
    await predictor.drain(5.0)
    draws = random.Random(7)
    expected = sum(draws.random() < 0.25 for _ in range(200))  # one draw per scored entity
    shadowed = [r for r in sink.records if r.arm == "shadow"]
    assert len(shadowed) == expected and 20 < expected < 80
    off, _, off_models, off_sink = make(route={**route, "shadow_ratio": 0})
    await off.predict(item(1), Deadline.after(10.0))
    await off.drain(5.0)
    assert [r.arm for r in off_sink.records] == ["stable"] and off_models.infer_calls == [("fraud", "2", 1)]


async def test_shadow_runs_in_background_on_its_own_deadline() -> None:
    models = FakeModels()
    models.gates["3"] = asyncio.Event()
    limits = replace(LIMITS, inference_timeout_s=5.0, shadow_max_wait_s=0.0)
    route = {"versions": [{"version": "2", "weight": 100}], "shadow": ["3"]}
    predictor, _, _, sink = make(models=models, route=route, limits=limits)
    outs = await asyncio.gather(*(predictor.predict(item(i), Deadline.after(1.0)) for i in range(3)))
    assert [o.model_version for o in outs] == ["2"] * 3  # answered while the shadow is still held
    await settle()
    assert [(v, n) for _, v, n in models.infer_calls] == [("2", 3), ("3", 3)]  # shadow rows batched too
    primary_timeout, shadow_timeout = models.infer_timeouts
    assert primary_timeout <= 1.0 < shadow_timeout <= 5.0  # never bounded by the primary's deadline
    models.gates["3"].set()
    await predictor.drain(5.0)
    assert sorted(r.request_id for r in sink.records if r.arm == "shadow") == ["r0", "r1", "r2"]


class TraceRecordingFeatures(FakeFeatures):
    """Remembers the span current when each batched call was made."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[trace.SpanContext] = []

    async def get(
        self,
        entity_type: str,
        entities: Sequence[tuple[str, dict[str, Scalar]]],
        features: Sequence[str],
        timeout_s: float,
        related: Sequence[Mapping[str, str]] | None = None,
    ) -> list[FeatureRow]:
        self.spans.append(trace.get_current_span().get_span_context())
        return await super().get(entity_type, entities, features, timeout_s, related)


async def test_each_member_keeps_its_trace() -> None:
    exporter = memory_exporter()
    features = TraceRecordingFeatures()
    predictor, _, _, sink = make(features)

    async def traced(i: int) -> trace.SpanContext:
        with telemetry.tracer().start_as_current_span(f"request-{i}") as span:
            await predictor.predict(item(i), Deadline.after(10.0))
            return span.get_span_context()

    lone = await traced(9)
    assert features.spans[0].trace_id == lone.trace_id  # a batch of one runs in the request's trace
    members = await asyncio.gather(*(traced(i) for i in range(3)))
    spans = exporter.get_finished_spans()
    (batch,) = [s for s in spans if s.name == "predmesh.gateway/batch"]
    assert features.spans[1] == batch.get_span_context()  # the shared call runs in the batch span...
    assert sorted(link.context.span_id for link in batch.links) == sorted(m.span_id for m in members)  # ...linked
    waits = [s for s in spans if s.name == "queue_wait"]
    assert sorted(s.parent.span_id for s in waits if s.parent) == sorted(m.span_id for m in members)
    # Every prediction record carries its own request's trace, not the batch's.
    assert {r.trace_id for r in sink.records} == {format(c.trace_id, "032x") for c in [lone, *members]}


class _Job:
    def __init__(self, name: str) -> None:
        self.name = name
        self.error: BaseException | None = None

    @property
    def rows(self) -> int:
        return 1

    def fail(self, err: BaseException) -> None:
        self.error = self.error or err


async def test_a_busy_lane_holds_arrivals_until_a_batch_returns_then_sends_them_together() -> None:
    from services.gateway.core.coalescer import Coalescer, Window

    sent: list[list[str]] = []
    release: list[asyncio.Event] = []

    async def run(key: str, jobs: list[_Job]) -> None:
        sent.append([job.name for job in jobs])
        gate = asyncio.Event()
        release.append(gate)
        await gate.wait()
        for job in jobs:
            job.fail(RuntimeError("answered"))  # `fail` marks the job answered here

    batches = Coalescer(run, Window(max_rows=64, max_wait_s=0.0, flush_when_idle=True, max_inflight=2))
    batches.submit("m", _Job("a"))
    await settle()
    batches.submit("m", _Job("b"))  # one batch out, a slot free: leaves after max_wait (0 s)
    await settle()
    assert sent == [["a"], ["b"]]
    for name in "cdef":  # two batches out: no timer (a 0 s one would fire within settle(), see below)
        batches.submit("m", _Job(name))
    await settle()
    assert sent == [["a"], ["b"]]
    release[0].set()
    await settle()
    assert sent == [["a"], ["b"], ["c", "d", "e", "f"]]
    release[1].set()
    release[2].set()
    await batches.drain(1.0)
    assert batches.inflight == 0

    unbounded: list[list[str]] = []

    async def record(key: str, jobs: list[_Job]) -> None:
        unbounded.append([job.name for job in jobs])
        await asyncio.sleep(0.05)

    free = Coalescer(record, Window(max_rows=64, max_wait_s=0.0, flush_when_idle=True, max_inflight=0))
    for name in "abc":
        free.submit("m", _Job(name))
        await settle()
    assert unbounded == [["a"], ["b"], ["c"]]  # no bound: each left on its own timer
    await free.drain(1.0)


class GatedBackgroundFeatures(FakeFeatures):
    """Holds every call for entities named b* (the background work) until `background_gate` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.background_gate = asyncio.Event()

    async def get(
        self,
        entity_type: str,
        entities: Sequence[tuple[str, dict[str, Scalar]]],
        features: Sequence[str],
        timeout_s: float,
        related: Sequence[Mapping[str, str]] | None = None,
    ) -> list[FeatureRow]:
        if any(entity_id.startswith("b") for entity_id, _ in entities):
            await self.background_gate.wait()
        return await super().get(entity_type, entities, features, timeout_s, related)


async def test_a_real_time_request_does_not_wait_for_background_batches_of_its_model() -> None:
    features = GatedBackgroundFeatures()
    predictor, _, models, _ = make(features)
    background = PredictInput(
        request_id="b", model="fraud", version="", entity_id="b0", context={"amount": 1.0}, priority=Priority.BATCH
    )
    held = asyncio.create_task(predictor.predict(background, Deadline.after(30.0)))
    await settle()
    assert len(features.calls) == 0 and not held.done()  # the background batch is in flight, held
    # Same model and version: with one lane it would wait for the held batch (a 60 s window).
    out = await asyncio.wait_for(predictor.predict(item(1), Deadline.after(10.0)), timeout=5.0)
    assert out.entity_id == "u1" and not out.degraded and not held.done()
    features.background_gate.set()
    assert (await held).entity_id == "b0"
    assert sorted(models.infer_priorities) == [Priority.REALTIME, Priority.BATCH]
