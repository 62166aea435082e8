"""Coalescing concurrent Redis reads: many GetFeatures calls in flight -> one pipeline.

Every GetFeatures call used to send its own pipeline, and redis-py's asyncio client costs
far more Python per pipeline (a pooled connection, timeouts, a task switch per reply) than
per command in it. `ReadCoalescer.fetch_keys` (the `FeatureStore` read interface) queues the
caller's keys with one future per caller; the queue is flushed as ONE read of every queued
key (`read`, the store's unspanned pipelined read):

- on the next event-loop iteration after the first caller queued (so the callers that run in
  the same iteration share it, and a lone caller waits one iteration, ~0);
- but at most `max_inflight` reads run at once: callers that arrive while that many are in
  flight wait for the first of them to finish and then go together. Under load batches grow
  by themselves; when idle nothing waits.
- a read holds at most `max_keys` keys (whole callers: a caller with more keys than that is
  read alone); the rest waits for the next read.

Each caller gets exactly its own entities, in its order. A failed read fails every caller
of that read with its own copy of the error (a `StoreUnavailable` stays one; nothing is
partial). A caller cancelled while waiting (its deadline) is skipped when the read is formed,
or its share of a read already running is dropped; the read runs in its own task, so the
other callers never see the cancellation.

Tracing (`traced`, decided once: tracing is set up per process before serving): each caller
gets a `redis.pipeline` span of its own (child of its RPC's span) covering its wait and the
shared read, with the read's size (`predmesh.batch_entities`) in its attributes.

Ownership/threading: one event loop. The coalescer holds the queue and a set of its running
read tasks (so none is garbage-collected mid-flight); `aclose()` refuses new reads
(`StoreUnavailable`), reads what is queued and awaits every running read. It does not own
the store.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from predmesh.common import telemetry
from services.features.core.store import PIPELINE_SPAN, StoredEntity
from services.features.errors import StoreUnavailable

Key = tuple[str, str, Sequence[str]]  # (entity type, entity id, fields)
Read = Callable[[Sequence[Key]], Awaitable[list[StoredEntity]]]


class BatchStats:
    """Counts of the reads sent (plain ints; `observe` is called once per read)."""

    __slots__ = ("callers", "keys", "reads")

    def __init__(self) -> None:
        self.reads = 0
        self.callers = 0
        self.keys = 0


class _Waiter:
    __slots__ = ("batch", "future", "keys")

    def __init__(self, keys: Sequence[Key], future: asyncio.Future[list[StoredEntity]]) -> None:
        self.keys = keys
        self.future = future
        self.batch = 0  # keys in the read that served this caller (for its span)


class ReadCoalescer:
    """Batches concurrent `fetch_keys` calls into shared reads (see the module docstring)."""

    def __init__(
        self,
        read: Read,
        max_keys: int = 1024,
        max_inflight: int = 1,
        observe: Callable[[int, int], None] | None = None,
        traced: bool = False,
    ) -> None:
        if max_keys < 1 or max_inflight < 1:
            raise ValueError("max_keys and max_inflight must be at least 1")
        self._read = read
        self._max_keys = max_keys
        self._max_inflight = max_inflight
        self._observe = observe  # (callers, keys) of each read
        self._traced = traced  # a span per caller (tracing is set up once per process, before serving)
        self._queue: list[_Waiter] = []
        self._flush_scheduled = False
        self._running: set[asyncio.Task[None]] = set()
        self._closed = False
        self.stats = BatchStats()

    async def fetch_keys(self, keys: Sequence[Key]) -> list[StoredEntity]:
        """The stored entities of `keys` (aligned), read together with every concurrent caller's."""
        if not keys:
            return []
        if self._closed:
            raise StoreUnavailable("feature store is shutting down")
        if self._traced:
            return await self._spanned(keys)
        return await self._enqueue(keys).future

    async def _spanned(self, keys: Sequence[Key]) -> list[StoredEntity]:
        attributes: dict[str, Any] = {"db.system": "redis", "db.operation": "HGETALL", "predmesh.entities": len(keys)}
        with telemetry.span(PIPELINE_SPAN, **attributes) as span:
            waiter = self._enqueue(keys)
            try:
                return await waiter.future
            finally:
                span.set_attribute("predmesh.batch_entities", waiter.batch)

    def _enqueue(self, keys: Sequence[Key]) -> _Waiter:
        loop = asyncio.get_running_loop()
        waiter = _Waiter(keys, loop.create_future())
        self._queue.append(waiter)
        if not self._flush_scheduled and len(self._running) < self._max_inflight:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return waiter

    def _flush(self) -> None:
        """Start reads of the queued callers while fewer than `max_inflight` run."""
        self._flush_scheduled = False
        while self._queue and len(self._running) < self._max_inflight:
            batch = self._take()
            if not batch:
                continue  # every taken caller had given up
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _take(self) -> list[_Waiter]:
        """Whole callers from the head of the queue, up to `max_keys` keys (at least one caller)."""
        queue = self._queue
        taken: list[_Waiter] = []
        size = 0
        index = 0
        while index < len(queue):
            waiter = queue[index]
            n = len(waiter.keys)
            if taken and size + n > self._max_keys:
                break
            index += 1
            if waiter.future.done():  # cancelled while queued
                continue
            taken.append(waiter)
            size += n
            if size >= self._max_keys:
                break
        del queue[:index]
        return taken

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._queue and not self._flush_scheduled:
            self._flush()

    async def _run(self, batch: list[_Waiter]) -> None:
        keys: list[Key] = []
        for waiter in batch:
            keys.extend(waiter.keys)
        stats = self.stats
        stats.reads += 1
        stats.callers += len(batch)
        stats.keys += len(keys)
        if self._observe is not None:
            self._observe(len(batch), len(keys))
        try:
            replies = await self._read(keys)
            if len(replies) != len(keys):
                raise RuntimeError(f"store answered {len(replies)} entities for {len(keys)} keys")
        except asyncio.CancelledError:
            _fail(batch, StoreUnavailable("feature store read cancelled (shutting down)"))
            raise
        except Exception as err:  # every caller gets the error, none a partial answer
            _fail(batch, err)
            return
        offset = 0
        for waiter in batch:
            n = len(waiter.keys)
            waiter.batch = len(keys)
            if not waiter.future.done():
                waiter.future.set_result(replies[offset : offset + n])
            offset += n

    async def aclose(self) -> None:
        """Refuse new reads, read what is queued, await every running read."""
        self._closed = True
        while self._queue or self._running:
            if self._queue and len(self._running) < self._max_inflight:
                self._flush()
            if self._running:
                await asyncio.gather(*list(self._running), return_exceptions=True)


def _fail(batch: list[_Waiter], err: BaseException) -> None:
    for waiter in batch:
        if not waiter.future.done():
            waiter.future.set_exception(_own_copy(err))


def _own_copy(err: BaseException) -> BaseException:
    """A copy of `err` for one caller (each caller's task raises it and adds its own traceback)."""
    try:
        mine = copy.copy(err)
    except Exception:  # an exception type that cannot be copied: share it
        return err
    mine.__cause__ = err.__cause__
    return mine
