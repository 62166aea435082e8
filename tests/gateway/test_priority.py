"""Priority lanes: the class a request runs in (key default, downgrade only) and lane admission
(batch refused first, then async, real-time last; deferred work waits for room)."""

from __future__ import annotations

import asyncio

import pytest

from predmesh.common.deadline import Deadline
from services.gateway.core.auth import KeyTableError, parse_key_table
from services.gateway.core.callbacks import CallbackLimits, CallbackSender
from services.gateway.core.catalog import ModelCatalog
from services.gateway.core.predictor import Predictor, PredictorLimits
from services.gateway.core.priority import LaneAdmission, Priority, resolve
from services.gateway.core.routing import parse_routing
from services.gateway.core.types import PredictInput
from services.gateway.errors import PermissionDenied, ResourceExhausted
from services.gateway.metrics import GatewayMetrics
from tests.gateway.fakes import FakeFeatures, FakeModels, ListSink


def test_unspecified_takes_the_key_default_and_a_request_may_only_lower_it() -> None:
    assert resolve(0, Priority.REALTIME) is Priority.REALTIME
    assert resolve(0, Priority.BATCH) is Priority.BATCH
    assert resolve(Priority.BATCH, Priority.REALTIME) is Priority.BATCH
    with pytest.raises(PermissionDenied):
        resolve(Priority.REALTIME, Priority.BATCH)
    with pytest.raises(PermissionDenied):
        resolve(9, Priority.REALTIME)
    assert resolve(Priority.REALTIME, Priority.REALTIME, floor=Priority.ASYNC) is Priority.ASYNC  # PredictAsync


def test_key_table_carries_a_default_priority() -> None:
    table = parse_key_table({"a": ["*"], "b": {"models": ["*"], "priority": "batch"}})
    assert sorted(g.priority for g in table.grants) == [Priority.REALTIME, Priority.BATCH]
    with pytest.raises(KeyTableError):
        parse_key_table({"c": {"models": ["*"], "priority": "urgent"}})


def test_overload_refuses_batch_then_async_before_realtime() -> None:
    refused: list[str] = []
    lanes = LaneAdmission(4, async_share=0.75, batch_share=0.5, retry_after_ms=250, on_refused=refused.append)
    held = [lanes.admit(Priority.REALTIME), lanes.admit(Priority.REALTIME)]  # 2 in flight: batch lane full
    for slot in held:
        slot.__enter__()
    with pytest.raises(ResourceExhausted, match="retry after 250 ms"):
        lanes.admit(Priority.BATCH)
    with lanes.admit(Priority.ASYNC):  # 3 in flight: async lane full, real-time still served
        with pytest.raises(ResourceExhausted):
            lanes.admit(Priority.ASYNC)
        with lanes.admit(Priority.REALTIME):  # 4: now everything is refused
            with pytest.raises(ResourceExhausted):
                lanes.admit(Priority.REALTIME)
    assert refused == ["batch", "async", "realtime"]
    assert lanes.inflight == 2
    assert LaneAdmission(0).has_room(Priority.BATCH)  # 0 = no limit


async def test_deferred_work_waits_for_a_released_slot() -> None:
    lanes = LaneAdmission(2, batch_share=0.5)
    slot = lanes.admit(Priority.REALTIME)
    slot.__enter__()
    waiter = asyncio.ensure_future(lanes.wait_for_room(Priority.BATCH))
    await asyncio.sleep(0)
    assert not waiter.done()
    slot.__exit__(None, None, None)
    await asyncio.wait_for(waiter, 1.0)
    assert lanes.inflight == 0


async def test_background_work_waits_for_a_gap_in_realtime_traffic() -> None:
    lanes = LaneAdmission(0)
    await asyncio.wait_for(lanes.realtime_quiet(10.0), 1.0)  # nothing in flight: no wait
    slot = lanes.admit(Priority.REALTIME)
    slot.__enter__()
    batch = lanes.admit(Priority.BATCH)
    batch.__enter__()  # batch work in flight does not count as real-time
    assert (lanes.inflight, lanes.realtime_inflight) == (2, 1)
    waiter = asyncio.ensure_future(lanes.realtime_quiet(10.0))
    await asyncio.sleep(0)
    batch.__exit__(None, None, None)
    await asyncio.sleep(0)
    assert not waiter.done()
    slot.__exit__(None, None, None)
    await asyncio.wait_for(waiter, 1.0)
    assert (lanes.inflight, lanes.realtime_inflight) == (0, 0)
    held = lanes.admit(Priority.REALTIME)
    held.__enter__()
    await asyncio.wait_for(lanes.realtime_quiet(0.01), 1.0)  # bounded: goes on after max_wait_s


def test_callback_backoff_doubles_with_jitter_and_is_capped() -> None:
    def sender(rand: float) -> CallbackSender:
        limits = CallbackLimits(backoff_base_s=1.0, backoff_max_s=10.0)
        return CallbackSender(None, None, None, limits, GatewayMetrics(), rand=lambda: rand)  # type: ignore[arg-type]

    low, high = sender(0.0), sender(1.0)
    assert [low.backoff_s(a) for a in (1, 2, 3, 4, 5, 6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert [high.backoff_s(a) for a in (1, 2, 3, 4, 5, 6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_polling_identifies_the_key_and_counts_against_its_rate_limit() -> None:
    from services.gateway.core.auth import ApiKeyAuthorizer
    from services.gateway.errors import Unauthenticated

    table = parse_key_table({"k": {"models": ["fraud"], "rate_per_s": 1, "burst": 2, "name": "team-a"}})
    auth = ApiKeyAuthorizer(table, clock=lambda: 0.0)
    assert auth.identify("k").name == "team-a"  # no model needed
    auth.check("k", "fraud")
    with pytest.raises(ResourceExhausted):
        auth.identify("k")
    with pytest.raises(Unauthenticated):
        auth.identify("nope")


async def test_the_orchestrator_is_told_each_batch_class() -> None:
    models = FakeModels()
    limits = PredictorLimits(features_timeout_s=1.0, inference_timeout_s=1.0, max_batch_items=64)
    predictor = Predictor(FakeFeatures(), models, ModelCatalog(models, 60.0), ListSink(), limits)
    predictor.set_routing(parse_routing({"models": {"fraud": {}}}, "r1"))

    def items(priority: int, n: int = 3) -> list[PredictInput]:
        return [PredictInput("r", "fraud", "", f"u{i}", {"amount": 1.0}, priority=priority) for i in range(n)]

    for priority in (Priority.BATCH, Priority.ASYNC, Priority.REALTIME, 0):
        await predictor.predict_batch("r", "fraud", "", items(int(priority)), Deadline.after(2.0))
    # unspecified (0) is real-time; a coalesced batch takes its most urgent member's class
    assert models.infer_priorities == [3, 2, 1, 1]
    await asyncio.gather(
        predictor.predict_batch("a", "fraud", "", items(3), Deadline.after(2.0)),
        predictor.predict_batch("b", "fraud", "", items(1), Deadline.after(2.0)),
    )
    assert set(models.infer_priorities[4:]) <= {1, 3} and 1 in models.infer_priorities[4:]
    await predictor.drain(1.0)
