"""Cross-request coalescing: gather concurrent jobs per key into one batched upstream call.

A `Coalescer` keeps one lane per key (for the gateway: model + serving version). Jobs
submitted to a lane are flushed as one batch, by an adaptive window:

- at once when the lane is idle (no batch of that key in flight, `flush_when_idle`): the
  flush runs on the next turn of the event loop, so a lone request waits ~0 while the
  requests that arrived in the same turn still share the call;
- while a batch is in flight, new jobs accumulate and are flushed when the lane becomes
  idle again or `max_wait_s` after the first of them arrived, whichever comes first;
- while `max_inflight` batches of the lane are in flight, no timer runs: new jobs wait for
  the first of those batches to return and then leave together. Under load the batches
  therefore grow with the arrival rate instead of every request going alone after
  `max_wait_s` (with a 1 ms window and a call taking tens of ms, an unbounded lane sent
  batches of ~1.3 rows at 32 requests in flight, paying each hop per request);
- at once when the lane holds `max_rows` rows (a job never joins a batch it would push
  over `max_rows`; a larger job goes alone).

`run(key, jobs)` does the batched work and answers every job. The coalescer owns the
flush tasks (a strong reference to each until it ends) and guarantees an answer: whatever
`run` raises (a bug, a cancellation at shutdown) is handed to `job.fail` of every job;
`fail` must be a no-op for a job that was already answered. One event loop; not
thread-safe. `drain()` flushes what is queued and waits for the batches in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from services.gateway.core.tasks import drain_tasks
from services.gateway.errors import Unavailable

log = logging.getLogger(__name__)


class Job(Protocol):
    @property
    def rows(self) -> int:
        """How many rows the job adds to a batch (>= 1)."""
        ...

    def fail(self, err: BaseException) -> None:
        """Answer the job with an error unless it has been answered already."""
        ...


K = TypeVar("K", bound=Hashable)
J = TypeVar("J", bound=Job)


@dataclass(frozen=True, slots=True)
class Window:
    """When a lane is flushed (see the module docstring)."""

    max_rows: int = 64
    max_wait_s: float = 0.001
    flush_when_idle: bool = True
    max_inflight: int = 2  # batches of one lane in flight at once (0: no bound)


class _Lane(Generic[J]):
    __slots__ = ("inflight", "jobs", "rows", "timer")

    def __init__(self) -> None:
        self.jobs: list[J] = []
        self.rows = 0
        self.inflight = 0
        self.timer: asyncio.Handle | None = None


class Coalescer(Generic[K, J]):
    def __init__(self, run: Callable[[K, list[J]], Awaitable[None]], window: Window) -> None:
        self._run = run
        self._window = window
        self._lanes: dict[K, _Lane[J]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def inflight(self) -> int:
        """Batches running now."""
        return len(self._tasks)

    def submit(self, key: K, job: J) -> None:
        """Queue `job`; it is answered through its own `fail` or by `run`. Never blocks."""
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        window = self._window
        if lane.rows and lane.rows + job.rows > window.max_rows:
            self._flush(key, lane)
        lane.jobs.append(job)
        lane.rows += job.rows
        if lane.rows >= window.max_rows:
            self._flush(key, lane)
        elif lane.timer is None and not self._busy(lane):
            loop = asyncio.get_running_loop()
            if window.flush_when_idle and lane.inflight == 0:
                lane.timer = loop.call_soon(self._flush, key, lane)
            else:
                lane.timer = loop.call_later(window.max_wait_s, self._flush, key, lane)

    async def drain(self, timeout_s: float) -> None:
        """Flush every lane now, wait for the batches up to `timeout_s`, cancel the rest."""
        for key, lane in list(self._lanes.items()):
            if lane.jobs:
                self._flush(key, lane)
        await drain_tasks(self._tasks, timeout_s)

    def _busy(self, lane: _Lane[J]) -> bool:
        """No more batches of this lane may leave before one in flight returns (size limit aside)."""
        return 0 < self._window.max_inflight <= lane.inflight

    def _flush(self, key: K, lane: _Lane[J]) -> None:
        if lane.timer is not None:
            lane.timer.cancel()
            lane.timer = None
        if not lane.jobs:
            return
        jobs, lane.jobs, lane.rows = lane.jobs, [], 0
        lane.inflight += 1
        task = asyncio.get_running_loop().create_task(self._answer(key, jobs))
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._finished(done, key, lane))

    async def _answer(self, key: K, jobs: list[J]) -> None:
        try:
            await self._run(key, jobs)
        except asyncio.CancelledError:
            self._fail_all(jobs, Unavailable("gateway shutting down"))
            raise
        except Exception as err:
            log.exception("batched call for %s failed", key)
            self._fail_all(jobs, err)
        else:
            self._fail_all(jobs, RuntimeError(f"batched call for {key} left a job unanswered"))

    @staticmethod
    def _fail_all(jobs: list[J], err: BaseException) -> None:
        for job in jobs:
            job.fail(err)

    def _finished(self, task: asyncio.Task[None], key: K, lane: _Lane[J]) -> None:
        self._tasks.discard(task)
        lane.inflight -= 1
        if lane.jobs:
            if lane.timer is None:  # the lane was busy: what accumulated takes the free slot now
                self._flush(key, lane)
            elif lane.inflight == 0 and self._window.flush_when_idle:
                self._flush(key, lane)  # idle again: what accumulated goes now, not at the timer
        elif lane.inflight == 0 and self._lanes.get(key) is lane:
            del self._lanes[key]
