"""Domain types and ports of the durable async path (PredictAsync queue, results, callbacks).

Implementations live in transport/ (Kafka: transport/async_kafka.py, Redis:
transport/async_store.py); core code only sees these interfaces. All are async-only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from predmesh.common.callback_policy import CallbackTarget
from services.gateway.core.priority import Priority
from services.gateway.core.types import PredictInput, PredictOutput


class State(enum.Enum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class AsyncJob:
    """One accepted PredictAsync request, as queued in `async-requests` (keyed by request id)."""

    item: PredictInput
    target: CallbackTarget | None  # None: polling only
    owner: str  # the API key's name: only it may poll the result
    accepted_ms: int
    priority: Priority = Priority.ASYNC


@dataclass(frozen=True)
class AsyncResult:
    """The answer of one request: `output` when scored, else `error_code`/`error_message`."""

    request_id: str
    output: PredictOutput | None = None
    error_code: str = ""
    error_message: str = ""

    @property
    def state(self) -> State:
        return State.FAILED if self.error_code else State.DONE


@dataclass(frozen=True)
class Lookup:
    """What GetPrediction sees: the state, the owner and the result once there is one."""

    state: State
    owner: str
    result: AsyncResult | None = None


@dataclass(frozen=True)
class DueCallback:
    """A result whose callback is due (claimed for `lease` by this replica)."""

    result: AsyncResult
    target: CallbackTarget
    attempts: int
    first_ms: int


class JobQueue(Protocol):
    async def enqueue(self, job: AsyncJob) -> None:
        """Return once `job` is durable (acks=all); raise Unavailable otherwise."""
        ...


class ResultLog(Protocol):
    async def publish_result(self, result: AsyncResult) -> None:
        """Durably publish a result to `async-results`."""
        ...

    async def dead_letter(self, due: DueCallback, reason: str) -> None:
        """Durably publish an undeliverable result to `async-dead-letters`."""
        ...


class ResultStore(Protocol):
    """Shared state of every replica (Redis), each key with the result TTL."""

    async def mark_pending(self, job: AsyncJob, ttl_s: float) -> None:
        """Record the request as PENDING unless a state is there already (never overwrites DONE)."""
        ...

    async def lookup(self, request_id: str) -> Lookup | None:
        """The state of a request; None when unknown or expired."""
        ...

    async def claim(self, request_id: str, token: str, lease_s: float) -> bool:
        """SET NX of the request's claim key: True for exactly one scorer per lease."""
        ...

    async def store_result(self, job: AsyncJob, result: AsyncResult, ttl_s: float, first_due_ms: int) -> None:
        """Atomically store the result and, when the job has a target, schedule its callback."""
        ...

    async def claim_due(self, now_ms: int, lease_ms: int, limit: int) -> list[DueCallback]:
        """Callbacks due at `now_ms`, each re-scheduled `lease_ms` ahead (a crashed sender's work returns)."""
        ...

    async def reschedule(self, request_id: str, due_ms: int, attempts: int) -> None: ...

    async def finish_callback(self, request_id: str) -> None:
        """Delivered or dead-lettered: forget the schedule and the pending entry."""
        ...

    async def pending_stats(self) -> tuple[int, int | None]:
        """(requests accepted and not yet answered, accepted_ms of the oldest one)."""
        ...
