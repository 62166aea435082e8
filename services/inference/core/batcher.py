"""Dynamic micro-batching: many small concurrent requests -> few larger backend calls.

`MicroBatcher` serves one model version. `submit(rows, deadline)` enqueues a request
(a float32 [n, D] matrix, n >= 1) with its own future and waits for exactly its own
n output rows. A collector task takes the first queued request, then keeps taking
requests until the batch holds `max_batch_rows` rows or `max_wait_s` has passed since
that first request (`time.monotonic()`), concatenates them and runs the batch as a
separate task, so the next batch forms while this one executes (at most
`max_inflight_batches` at once). When no batch is executing (an idle backend), the
batch leaves at once with what is already queued: a lone request never waits for a
window that nothing else would join (the gateway's coalescer follows the same rule). A
request larger than `max_batch_rows` runs alone; a request that would overflow the batch
waits for the next one (order is kept).

Deadlines: a request whose deadline has passed when its batch is formed is not
executed; its caller gets DeadlineExceeded. The batch call's own deadline is the
latest deadline among its requests (none when any request has none). A caller that
is cancelled while queued is skipped.

Priority: a request submitted with priority async or batch (predmesh.v1.Priority 2, 3) waits
in a background queue; real-time requests (1, or 0 = unspecified) are always taken first, so a
batch forms from real-time requests and is filled up with background ones only when no
real-time request is waiting; a background request carried over from a full batch goes back
to the front of its queue when real-time requests are waiting.

Backpressure: the queues are bounded (`max_queue` requests together); a full queue answers
ResourceExhausted at once instead of queueing without bound.

Observability: each request's trace context is captured at `submit` (on the caller's
task); every batch runs in one `predmesh.inference/batch` span LINKED to the requests it
carries, and each request gets a `queue_wait` child span (`telemetry.batch_span`; skipped
entirely while tracing is off). With `metrics` (a `BatchMetrics` and the `labels`
model/version), the batcher observes rows per batch, queue wait per request and keeps
the queue-depth gauge current.

Ownership/threading: one event loop; the batcher owns its queue, its collector task
and a set holding every batch task until it completes (so none is garbage-collected
mid-flight). Lifecycle: `start()` -> `submit()`... -> `stop()`, which refuses new
requests (Unavailable), lets the collector drain what is queued and awaits every
running batch. Results are set only on futures that are not done yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from predmesh.common import telemetry
from predmesh.common.deadline import Deadline
from predmesh.common.errors import DeadlineExceeded, ResourceExhausted, Unavailable
from predmesh.models.errors import ModelExecutionError
from services.inference.metrics import BatchMetrics

log = logging.getLogger(__name__)

RunBatch = Callable[[np.ndarray, Deadline | None], Awaitable[np.ndarray]]


@dataclass(frozen=True, slots=True)
class BatcherConfig:
    """Limits of one micro-batcher (see module docstring)."""

    max_batch_rows: int = 64
    max_wait_s: float = 0.001
    max_queue: int = 1024
    max_inflight_batches: int = 2

    def __post_init__(self) -> None:
        if self.max_batch_rows < 1 or self.max_queue < 1 or self.max_inflight_batches < 1:
            raise ValueError("max_batch_rows, max_queue and max_inflight_batches must be >= 1")
        if self.max_wait_s < 0:
            raise ValueError("max_wait_s must be >= 0")


@dataclass
class BatcherStats:
    """Counters since start (read-only snapshot via `MicroBatcher.stats()`)."""

    requests: int = 0
    rows: int = 0
    batches: int = 0
    expired: int = 0
    rejected: int = 0
    failed_batches: int = 0
    batch_rows: Counter[int] = field(default_factory=Counter)  # rows per batch -> batches
    batch_requests: Counter[int] = field(default_factory=Counter)  # requests per batch -> batches

    @property
    def mean_batch_requests(self) -> float:
        total = sum(self.batch_requests.values())
        return sum(k * v for k, v in self.batch_requests.items()) / total if total else 0.0


@dataclass(slots=True)
class _Pending:
    rows: np.ndarray
    deadline: Deadline | None
    future: asyncio.Future[np.ndarray]
    enqueued: float  # time.monotonic() at submit
    trace: telemetry.QueuedTrace | None  # None while tracing is off
    urgent: bool = True  # real-time (taken before every background request)


_STOP = object()


class MicroBatcher:
    """Batches concurrent requests for one model version (see module docstring)."""

    def __init__(
        self,
        run: RunBatch,
        config: BatcherConfig | None = None,
        name: str = "batcher",
        metrics: BatchMetrics | None = None,
        labels: tuple[str, str] = ("", ""),
    ) -> None:
        self._run = run
        self.config = config or BatcherConfig()
        self.name = name
        self._labels = labels
        self._size_hist = metrics.batch_size.labels(*labels) if metrics else None
        self._wait_hist = metrics.queue_wait.labels(*labels) if metrics else None
        self._depth_gauge = metrics.queue_depth.labels(*labels) if metrics else None
        self._urgent: deque[_Pending] = deque()
        self._background: deque[_Pending] = deque()
        self._arrived = asyncio.Event()  # set when a request (or the stop) is queued
        self._stop_requested = False  # stop(): the collector drains the queues, then ends
        self._stop_seen = False
        self._queued = 0  # requests in both queues
        self._collector: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots: asyncio.Semaphore | None = None
        self._stats = BatcherStats()
        self._closed = False

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        if self._collector is not None:
            return
        if self._closed:
            raise RuntimeError(f"{self.name} is stopped")
        self._slots = asyncio.Semaphore(self.config.max_inflight_batches)
        self._collector = asyncio.get_running_loop().create_task(self._collect(), name=f"{self.name}-collector")

    async def stop(self) -> None:
        """Refuse new requests, execute what is queued, wait for every running batch."""
        if self._closed:
            return
        self._closed = True
        if self._collector is not None:
            self._stop_requested = True
            self._arrived.set()
            await self._collector
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        # Not started: nothing ran the queues; fail whatever is there.
        for queue in (self._urgent, self._background):
            while queue:
                item = queue.popleft()
                if not item.future.done():
                    item.future.set_exception(Unavailable(f"{self.name} stopped"))

    # -- requests ----------------------------------------------------------
    async def submit(self, rows: np.ndarray, deadline: Deadline | None = None, priority: int = 0) -> np.ndarray:
        """Queue `rows` ([n, D], n >= 1) and return the backend output rows for them ([n, ...]).
        `priority`: predmesh.v1.Priority (2 async and 3 batch wait behind real-time requests)."""
        if self._closed or self._collector is None:
            raise Unavailable(f"{self.name} is not running")
        if deadline is not None and deadline.expired():
            raise DeadlineExceeded(f"deadline exceeded before {self.name} queued the request")
        if self._queued >= self.config.max_queue:
            self._stats.rejected += 1
            raise ResourceExhausted(f"{self.name}: queue full ({self.config.max_queue} requests)")
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        queued = telemetry.enqueue_trace() if telemetry.tracing_enabled() else None
        pending = _Pending(rows, deadline, future, time.monotonic(), queued, urgent=priority <= 1)
        (self._urgent if pending.urgent else self._background).append(pending)
        self._queued += 1
        self._arrived.set()
        if self._depth_gauge is not None:
            self._depth_gauge.set(self._queued)
        return await future

    def stats(self) -> BatcherStats:
        s = self._stats
        return BatcherStats(
            s.requests,
            s.rows,
            s.batches,
            s.expired,
            s.rejected,
            s.failed_batches,
            Counter(s.batch_rows),
            Counter(s.batch_requests),
        )

    # -- collector ---------------------------------------------------------
    def _pop(self) -> _Pending | None:
        queue = self._urgent if self._urgent else self._background
        if not queue:
            return None
        item = queue.popleft()
        self._queued -= 1
        if self._depth_gauge is not None:
            self._depth_gauge.set(self._queued)
        return item

    def _put_back(self, item: _Pending) -> None:
        """A request taken but not batched goes back to the front of its queue."""
        (self._urgent if item.urgent else self._background).appendleft(item)
        self._queued += 1

    async def _take(self, wait_s: float | None) -> _Pending | object | None:
        """Next request (real-time first); `_STOP` once (after stop(), when the queues are empty);
        None when `wait_s` (s) passes first; `wait_s` None = wait forever."""
        deadline = None if wait_s is None else time.monotonic() + wait_s
        while True:
            item = self._pop()
            if item is not None:
                return item
            if self._stop_requested and not self._stop_seen:
                self._stop_seen = True
                return _STOP
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            self._arrived.clear()
            try:
                if left is None:
                    await self._arrived.wait()
                else:
                    await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return None

    async def _collect(self) -> None:
        cfg = self.config
        carry: _Pending | None = None  # a request that did not fit the previous batch
        stopping = False
        while True:
            if carry is not None and not carry.urgent and self._urgent:
                self._put_back(carry)  # real-time requests are waiting: they go first
                carry = None
            if carry is not None:
                first: _Pending | object | None = carry
                carry = None
            elif stopping:
                first = await self._take(0)
                if first is None:
                    return
            else:
                first = await self._take(None)
            if first is _STOP:
                stopping = True
                continue
            assert isinstance(first, _Pending)
            batch = [first]
            n_rows = len(first.rows)
            idle = not self._tasks  # nothing executing: no reason to wait for company
            flush_at = time.monotonic() + (0.0 if idle else cfg.max_wait_s)
            while n_rows < cfg.max_batch_rows:
                item = await self._take(0 if stopping else flush_at - time.monotonic())
                if item is None:
                    break
                if item is _STOP:
                    stopping = True
                    continue
                assert isinstance(item, _Pending)
                if n_rows + len(item.rows) > cfg.max_batch_rows:
                    carry = item
                    break
                batch.append(item)
                n_rows += len(item.rows)
            # Wait for a free execution slot first, then drop what expired or was
            # cancelled meanwhile: nothing expired is ever sent to the backend.
            assert self._slots is not None
            await self._slots.acquire()
            if self._urgent and not any(item.urgent for item in batch):
                # Real-time requests arrived while this background batch waited for a slot: they go first.
                for item in ([carry] if carry is not None else []) + batch[::-1]:
                    self._put_back(item)
                carry = None
                self._slots.release()
                continue
            live = self._admit(batch)
            if not live:
                self._slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self._execute(live), name=f"{self.name}-batch")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _admit(self, batch: list[_Pending]) -> list[_Pending]:
        """Drop cancelled requests and fail expired ones; return those to execute."""
        live = []
        for item in batch:
            if item.future.done():  # caller went away (cancelled)
                continue
            if item.deadline is not None and item.deadline.expired():
                self._stats.expired += 1
                item.future.set_exception(DeadlineExceeded(f"deadline exceeded while queued in {self.name}"))
                continue
            live.append(item)
        return live

    async def _execute(self, batch: list[_Pending]) -> None:
        """Run one batch; every caller gets its rows or the batch's error, whatever step raises."""
        assert self._slots is not None
        try:
            sizes = [len(item.rows) for item in batch]
            stacked = batch[0].rows if len(batch) == 1 else np.concatenate([i.rows for i in batch], axis=0)
            self._account(batch, len(stacked))
            with self._span(batch, len(stacked)):
                output = await self._run(stacked, _latest(batch))
            if len(output) != len(stacked):
                raise ModelExecutionError(f"{self.name}: backend returned {len(output)} rows for {len(stacked)}")
        except BaseException as err:  # every caller gets the batch's error (cancelled: Unavailable)
            self._stats.failed_batches += 1
            failure = err if isinstance(err, Exception) else Unavailable(f"{self.name} stopped")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(failure)
            if not isinstance(err, Exception):
                raise
            return
        finally:
            self._slots.release()
        start = 0
        for item, size in zip(batch, sizes, strict=True):
            if not item.future.done():
                item.future.set_result(output[start : start + size])
            start += size

    def _account(self, batch: list[_Pending], rows: int) -> None:
        stats = self._stats
        stats.batches += 1
        stats.requests += len(batch)
        stats.rows += rows
        stats.batch_rows[rows] += 1
        stats.batch_requests[len(batch)] += 1
        self._observe(batch, rows)

    def _observe(self, batch: list[_Pending], rows: int) -> None:
        if self._size_hist is None or self._wait_hist is None:
            return
        self._size_hist.observe(rows)
        now = time.monotonic()
        for item in batch:
            self._wait_hist.observe(now - item.enqueued)

    def _span(self, batch: list[_Pending], rows: int) -> contextlib.AbstractContextManager[Any]:
        """The batch span linked to each traced request (no-op context while tracing is off)."""
        traces = [item.trace for item in batch if item.trace is not None]
        if not traces:
            return contextlib.nullcontext()
        model, version = self._labels
        attributes = {"predmesh.model": model, "predmesh.model_version": version, "batch.rows": rows}
        return telemetry.batch_span("predmesh.inference/batch", traces, attributes)


def _latest(batch: list[_Pending]) -> Deadline | None:
    deadlines = [item.deadline for item in batch]
    if any(d is None for d in deadlines):
        return None
    return max(deadlines, key=lambda d: d.at)  # type: ignore[union-attr]
