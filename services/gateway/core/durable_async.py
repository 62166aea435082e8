"""Durable PredictAsync: accept into the queue, score once per request id, answer by polling.

`DurableAsync.submit` checks the callback target (CallbackPolicy, SSRF-safe, address pinned),
returns only once the request is durable in the queue (Kafka `async-requests`, keyed by request
id), then marks it PENDING in the shared store. `process(jobs)` is called by the queue consumer
with a batch of consumed jobs and returns once each one has a stored result; the consumer
commits offsets only after that, so a replica killed mid-batch leaves the batch to the next
owner of the partition (at-least-once delivery, made idempotent here):

- a request whose result is stored already is skipped (a duplicate submission is scored once);
- otherwise one scorer wins the claim (SET NX with a lease); a loser waits for the winner's
  result, or for its lease to lapse (the winner died) and then claims it itself;
- the result is published to `async-results`, then stored with its callback schedule
  (`core/callbacks.py` delivers it).

Async scoring yields to real-time traffic: while the async lane of `LaneAdmission` is full,
work is deferred (not refused: it is accepted already). One event loop; not thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from predmesh.common.callback_policy import CallbackPolicy
from predmesh.common.deadline import Deadline
from predmesh.common.errors import PredmeshError
from services.gateway.core.async_ports import AsyncJob, AsyncResult, JobQueue, Lookup, ResultLog, ResultStore
from services.gateway.core.predictor import Predictor
from services.gateway.core.priority import LaneAdmission, Priority
from services.gateway.core.types import PredictInput
from services.gateway.errors import NotFound
from services.gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DurableAsyncLimits:
    result_ttl_s: float = 86400.0  # how long results (and PENDING marks) are kept for polling
    deadline_s: float = 1.0  # scoring deadline of one request
    claim_lease_s: float = 10.0  # a scorer's exclusive claim; after it lapses another may score
    claim_poll_s: float = 0.1  # how often a waiting scorer looks for the winner's result


class DurableAsync:
    def __init__(
        self,
        predictor: Predictor,
        queue: JobQueue,
        store: ResultStore,
        results: ResultLog,
        policy: CallbackPolicy,
        limits: DurableAsyncLimits,
        metrics: GatewayMetrics,
        admission: LaneAdmission | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._predictor = predictor
        self._queue = queue
        self._store = store
        self._results = results
        self._policy = policy
        self._limits = limits
        self._metrics = metrics
        self._admission = admission
        self._clock_ms = clock_ms
        self._token = uuid.uuid4().hex  # this replica's claim token

    async def submit(
        self,
        item: PredictInput,
        callback_target: str,
        allowed_hosts: Sequence[str],
        owner: str,
        priority: Priority = Priority.ASYNC,
    ) -> str:
        """Accept `item`: checked target, durable in the queue, marked PENDING; returns its request id."""
        target = await self._policy.check(callback_target, allowed_hosts) if callback_target else None
        if not item.request_id:
            item = replace(item, request_id=uuid.uuid4().hex)
        job = AsyncJob(item=item, target=target, owner=owner, accepted_ms=self._clock_ms(), priority=priority)
        await self._queue.enqueue(job)  # the acknowledgement point: durable from here on
        try:
            await self._store.mark_pending(job, self._limits.result_ttl_s)
        except PredmeshError as err:  # accepted anyway: the worker stores the state when it scores
            log.warning("async %s queued but not marked pending: %s", item.request_id, err.message)
        self._metrics.async_events.labels("accepted").inc()
        return item.request_id

    async def get(self, request_id: str, owner: str) -> Lookup:
        """State of a request submitted by `owner`; NotFound when unknown, expired or someone else's."""
        found = await self._store.lookup(request_id) if request_id else None
        if found is None or found.owner != owner:
            raise NotFound("no async prediction with this request id (unknown, expired, or not yours)")
        return found

    async def process(self, jobs: Sequence[AsyncJob]) -> None:
        """Score and store every job of a consumed batch (one per request id)."""
        unique: dict[str, AsyncJob] = {}
        for job in jobs:
            unique.setdefault(job.item.request_id, job)
        self._metrics.async_events.labels("duplicate").inc(len(jobs) - len(unique))
        await asyncio.gather(*(self._process_one(job) for job in unique.values()))

    async def _process_one(self, job: AsyncJob) -> None:
        request_id = job.item.request_id
        while True:
            found = await self._store.lookup(request_id)
            if found is not None and found.result is not None:
                self._metrics.async_events.labels("duplicate").inc()
                return
            if await self._store.claim(request_id, self._token, self._limits.claim_lease_s):
                break
            await asyncio.sleep(self._limits.claim_poll_s)  # another scorer holds it: its result or its lease
        result = await self._score(job)
        await self._results.publish_result(result)
        await self._store.store_result(job, result, self._limits.result_ttl_s, self._clock_ms())
        self._metrics.async_events.labels("scored").inc()

    async def _score(self, job: AsyncJob) -> AsyncResult:
        if self._admission is not None:
            await self._admission.background_turn()  # the adaptive pace's pause, if any
            await self._admission.wait_for_room(job.priority)  # real-time first: defer, never refuse
        try:
            if self._admission is not None:
                with self._admission.admit(job.priority, shed=False):
                    output = await self._predictor.predict(job.item, Deadline.after(self._limits.deadline_s))
            else:
                output = await self._predictor.predict(job.item, Deadline.after(self._limits.deadline_s))
        except PredmeshError as err:
            return AsyncResult(job.item.request_id, error_code=err.code.value, error_message=err.message)
        except Exception:
            log.exception("async prediction %s failed", job.item.request_id)
            return AsyncResult(job.item.request_id, error_code="INTERNAL", error_message="internal error")
        return AsyncResult(job.item.request_id, output=output)
