"""Durable callback delivery: exponential back-off with jitter up to a horizon, then dead-letter.

The schedule lives in the shared store (every replica runs one `CallbackSender`): `claim_due`
hands each due callback to one replica for `lease_s` (a replica killed mid-delivery leaves it
to the others when the lease lapses). A failed attempt is rescheduled after
`backoff(attempt)` = a random point in [cap/2, cap], cap = min(base * 2^(attempt-1), max)
("equal jitter": retries of many failed targets spread out, none retries sooner than half
the cap), never later than `horizon_s` after the first attempt. A failure at or past the
horizon publishes the result to the dead-letter topic and ends the schedule.

Metrics: async events delivered / retried / dead_lettered, pending and oldest pending age
(cluster-wide, read from the store each round). Lifecycle: `start()` a background loop,
`stop()` ends it (in-flight deliveries finish or are cancelled; their leases bring them back).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from predmesh.common.errors import ErrorCode, PredmeshError
from services.gateway.core.async_jobs import CallbackPort
from services.gateway.core.async_ports import DueCallback, ResultLog, ResultStore
from services.gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallbackLimits:
    backoff_base_s: float = 0.5
    backoff_max_s: float = 300.0
    horizon_s: float = 3600.0  # retry this long after the first attempt, then dead-letter
    attempt_timeout_s: float = 2.0
    lease_s: float = 10.0  # a claimed delivery returns to the schedule after this if its sender died
    poll_s: float = 0.05  # idle wait between looks at the schedule
    batch: int = 64  # most deliveries claimed per round


def result_error(code: str, message: str) -> PredmeshError | None:
    """The error a stored FAILED result carries (its original status code), None for DONE."""
    if not code:
        return None
    error = PredmeshError(message)
    error.code = ErrorCode(code) if code in ErrorCode._value2member_map_ else ErrorCode.INTERNAL
    return error


class CallbackSender:
    def __init__(
        self,
        store: ResultStore,
        results: ResultLog,
        callbacks: CallbackPort,
        limits: CallbackLimits,
        metrics: GatewayMetrics,
        rand: Callable[[], float] = random.random,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._store = store
        self._results = results
        self._callbacks = callbacks
        self._limits = limits
        self._metrics = metrics
        self._rand = rand
        self._clock_ms = clock_ms
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.dead_lettered = 0  # by this replica since start (the dead-letter gauge reads it)

    def backoff_s(self, attempt: int) -> float:
        """Pause after failed attempt number `attempt` (1-based), jittered within [cap/2, cap]."""
        cap = min(self._limits.backoff_base_s * 2 ** max(attempt - 1, 0), self._limits.backoff_max_s)
        return cap / 2 + self._rand() * cap / 2

    async def run_once(self) -> int:
        """Deliver what is due now; returns how many callbacks were attempted."""
        lim = self._limits
        due = await self._store.claim_due(self._clock_ms(), int(lim.lease_s * 1000), lim.batch)
        await asyncio.gather(*(self._attempt(d) for d in due))
        await self._update_gauges()
        return len(due)

    async def _attempt(self, due: DueCallback) -> None:
        request_id = due.result.request_id
        lim = self._limits
        try:
            await self._callbacks.deliver(
                due.target,
                request_id,
                due.result.output,
                result_error(due.result.error_code, due.result.error_message),
                lim.attempt_timeout_s,
            )
        except Exception as err:
            attempts = due.attempts + 1
            now = self._clock_ms()
            end = due.first_ms + int(lim.horizon_s * 1000)
            if now >= end:
                log.warning("callback for %s dead-lettered after %d attempts: %s", request_id, attempts, err)
                await self._results.dead_letter(due, f"{attempts} attempts failed within {lim.horizon_s:g}s: {err}")
                await self._store.finish_callback(request_id)
                self._metrics.async_events.labels("dead_lettered").inc()
                self.dead_lettered += 1
                return
            next_ms = min(now + int(self.backoff_s(attempts) * 1000), end)
            await self._store.reschedule(request_id, next_ms, attempts)
            self._metrics.async_events.labels("retried").inc()
            return
        await self._store.finish_callback(request_id)
        self._metrics.async_events.labels("delivered").inc()

    async def _update_gauges(self) -> None:
        count, oldest_ms = await self._store.pending_stats()
        self._metrics.async_pending.set(count)
        age = (self._clock_ms() - oldest_ms) / 1000 if oldest_ms is not None else 0.0
        self._metrics.async_oldest_pending.set(max(age, 0.0))

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                if await self.run_once():
                    continue
            except PredmeshError as err:  # store or broker down: try again later
                log.warning("callback round failed: %s", err.message)
            except Exception:
                log.exception("callback round failed")
            await asyncio.sleep(self._limits.poll_s)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """End the loop. A cancellation swallowed by a client library (redis-py may turn one into
        its own timeout error) cannot keep it alive: the loop also checks a stop flag each round."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=self._limits.attempt_timeout_s + 5.0)
            self._task = None
