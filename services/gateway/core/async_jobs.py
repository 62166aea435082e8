"""PredictAsync: accept now, predict in the background, deliver the result to a callback.

`AsyncDispatcher` owns its background tasks (a strong reference to each until it ends),
bounds how many are pending (more -> RESOURCE_EXHAUSTED) and is drained explicitly at
shutdown. One event loop; not thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Protocol

from predmesh.common.callback_policy import CallbackPolicy, CallbackTarget
from predmesh.common.deadline import Deadline
from predmesh.common.errors import PredmeshError
from services.gateway.core.predictor import Predictor
from services.gateway.core.tasks import drain_tasks
from services.gateway.core.types import PredictInput, PredictOutput
from services.gateway.errors import ResourceExhausted

log = logging.getLogger(__name__)


class CallbackPort(Protocol):
    async def deliver(
        self,
        target: CallbackTarget,
        request_id: str,
        output: PredictOutput | None,
        error: PredmeshError | None,
        timeout_s: float,
    ) -> None:
        """Deliver one result; raise on failure (the dispatcher retries)."""
        ...


class AsyncDispatcher:
    def __init__(
        self,
        predictor: Predictor,
        callbacks: CallbackPort,
        max_pending: int,
        deadline_s: float,
        attempts: int,
        attempt_timeout_s: float,
        policy: CallbackPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._predictor = predictor
        self._callbacks = callbacks
        self._max_pending = max_pending
        self._deadline_s = deadline_s
        self._attempts = max(1, attempts)
        self._attempt_timeout_s = attempt_timeout_s
        self._policy = policy or CallbackPolicy()
        self._sleep = sleep
        self._tasks: set[asyncio.Task[None]] = set()
        self.delivered = 0
        self.failed_deliveries = 0

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def submit(self, item: PredictInput, callback_target: str, allowed_hosts: Sequence[str] = ()) -> str:
        """Check the callback target against `allowed_hosts` (the caller's key) and the gateway's
        policy, then accept the request; returns its request id. Nothing is dialled when refused."""
        if len(self._tasks) >= self._max_pending:
            raise ResourceExhausted(f"more than {self._max_pending} async predictions pending")
        target = await self._policy.check(callback_target, allowed_hosts)
        if len(self._tasks) >= self._max_pending:  # re-checked: the resolution yielded to the loop
            raise ResourceExhausted(f"more than {self._max_pending} async predictions pending")
        if not item.request_id:
            item = replace(item, request_id=uuid.uuid4().hex)
        task = asyncio.get_running_loop().create_task(self._run(item, target))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return item.request_id

    async def _run(self, item: PredictInput, target: CallbackTarget) -> None:
        output: PredictOutput | None = None
        error: PredmeshError | None = None
        try:
            output = await self._predictor.predict(item, Deadline.after(self._deadline_s))
        except PredmeshError as err:
            error = err
        except Exception:
            log.exception("async prediction %s failed", item.request_id)
            error = PredmeshError("internal error")
        for attempt in range(1, self._attempts + 1):
            try:
                await self._callbacks.deliver(target, item.request_id, output, error, self._attempt_timeout_s)
                self.delivered += 1
                return
            except Exception as err:
                log.warning("callback %s for %s failed (attempt %d): %s", target.host, item.request_id, attempt, err)
                if attempt < self._attempts:  # no pause after the last attempt
                    await self._sleep(min(0.05 * 2**attempt, 1.0))
        self.failed_deliveries += 1

    async def drain(self, timeout_s: float) -> None:
        """Wait for pending work up to `timeout_s`, then cancel what is left."""
        await drain_tasks(self._tasks, timeout_s)
