"""DurableAsync's idempotency rules with an in-memory store: duplicates in one batch and across
batches are scored once, a claim held by a live scorer makes the other wait for its result, a
lapsed claim (its scorer died) is taken over, and scoring waits while the async lane is full."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from predmesh.common.callback_policy import CallbackPolicy
from services.gateway.core.async_ports import AsyncJob, AsyncResult, DueCallback, Lookup, State
from services.gateway.core.durable_async import DurableAsync, DurableAsyncLimits
from services.gateway.core.pace import Pace, PaceLimits
from services.gateway.core.priority import LaneAdmission, Priority
from services.gateway.errors import NotFound
from services.gateway.metrics import GatewayMetrics
from tests.gateway.test_predictor import item, make


class MemoryStore:
    def __init__(self) -> None:
        self.states: dict[str, Lookup] = {}
        self.claims: dict[str, str] = {}
        self.stored: list[str] = []

    async def mark_pending(self, job: AsyncJob, ttl_s: float) -> None:
        self.states.setdefault(job.item.request_id, Lookup(State.PENDING, job.owner))

    async def lookup(self, request_id: str) -> Lookup | None:
        return self.states.get(request_id)

    async def claim(self, request_id: str, token: str, lease_s: float) -> bool:
        if request_id in self.claims:
            return False
        self.claims[request_id] = token
        return True

    async def store_result(self, job: AsyncJob, result: AsyncResult, ttl_s: float, first_due_ms: int) -> None:
        self.states[job.item.request_id] = Lookup(result.state, job.owner, result)
        self.stored.append(job.item.request_id)

    async def claim_due(self, now_ms: int, lease_ms: int, limit: int) -> list[DueCallback]:
        return []

    async def reschedule(self, request_id: str, due_ms: int, attempts: int) -> None: ...

    async def finish_callback(self, request_id: str) -> None: ...

    async def pending_stats(self) -> tuple[int, int | None]:
        return 0, None


class MemoryLog:
    def __init__(self) -> None:
        self.queued: list[AsyncJob] = []
        self.results: list[AsyncResult] = []

    async def enqueue(self, job: AsyncJob) -> None:
        self.queued.append(job)

    async def publish_result(self, result: AsyncResult) -> None:
        self.results.append(result)

    async def dead_letter(self, due: DueCallback, reason: str) -> None: ...


def build(admission: LaneAdmission | None = None) -> tuple[DurableAsync, MemoryStore, MemoryLog, GatewayMetrics]:
    predictor, _ = make()
    store, log, metrics = MemoryStore(), MemoryLog(), GatewayMetrics()
    durable = DurableAsync(
        predictor,
        log,
        store,
        log,
        CallbackPolicy(),
        DurableAsyncLimits(claim_poll_s=0.01),
        metrics,
        admission,
    )
    return durable, store, log, metrics


def job(request_id: str) -> AsyncJob:
    return AsyncJob(item=replace(item(), request_id=request_id), target=None, owner="team-a", accepted_ms=1)


async def test_duplicates_within_and_across_batches_are_scored_once() -> None:
    durable, store, log, metrics = build()
    await durable.process([job("r1"), job("r1"), job("r2")])
    await durable.process([job("r1")])
    assert sorted(store.stored) == ["r1", "r2"]
    assert [r.request_id for r in log.results] == ["r1", "r2"]
    assert metrics.async_count("scored") == 2 and metrics.async_count("duplicate") == 2


async def test_a_claimed_request_waits_for_the_winners_result() -> None:
    durable, store, log, _ = build()
    store.claims["r1"] = "another-replica"
    waiting = asyncio.ensure_future(durable.process([job("r1")]))
    await asyncio.sleep(0.05)
    assert not waiting.done() and store.stored == []
    store.states["r1"] = Lookup(State.DONE, "team-a", AsyncResult("r1"))  # the winner stored it
    await asyncio.wait_for(waiting, 1.0)
    assert store.stored == [] and log.results == []  # not scored a second time


async def test_a_lapsed_claim_is_taken_over() -> None:
    durable, store, _, _ = build()
    store.claims["r1"] = "dead-replica"
    waiting = asyncio.ensure_future(durable.process([job("r1")]))
    await asyncio.sleep(0.05)
    del store.claims["r1"]  # its lease expired
    await asyncio.wait_for(waiting, 1.0)
    assert store.stored == ["r1"]


async def test_async_scoring_waits_while_its_lane_is_full() -> None:
    lanes = LaneAdmission(2, async_share=0.5)
    durable, store, _, _ = build(lanes)
    slot = lanes.admit(Priority.REALTIME)
    slot.__enter__()  # one real-time request in flight: the async lane (1) is full
    waiting = asyncio.ensure_future(durable.process([job("r1")]))
    await asyncio.sleep(0.05)
    assert store.stored == []  # deferred, not refused
    slot.__exit__(None, None, None)
    await asyncio.wait_for(waiting, 1.0)
    assert store.stored == ["r1"]


async def test_async_scoring_follows_the_pace_and_is_never_shed() -> None:
    asked: list[float] = []

    class Overloaded(Pace):
        def next_call(self, now_s: float) -> tuple[int, float]:
            asked.append(now_s)
            return self.items, 0.0

    pace = Overloaded(PaceLimits())
    pace.overloaded = True  # client async/batch requests would be refused now
    lanes = LaneAdmission(0, pace=pace, clock=lambda: 42.0)
    durable, store, _, _ = build(lanes)
    await asyncio.wait_for(durable.process([job("r1"), job("r2")]), 1.0)
    assert sorted(store.stored) == ["r1", "r2"] and asked == [42.0, 42.0]  # one turn per request, accepted work runs


async def test_polling_is_limited_to_the_submitting_key() -> None:
    durable, _, log, _ = build()
    request_id = await durable.submit(replace(item(), request_id=""), "", (), owner="team-a")
    assert log.queued[0].item.request_id == request_id and log.queued[0].priority is Priority.ASYNC
    assert (await durable.get(request_id, "team-a")).state is State.PENDING
    for owner, rid in (("team-b", request_id), ("team-a", "unknown")):
        with pytest.raises(NotFound):
            await durable.get(rid, owner)
