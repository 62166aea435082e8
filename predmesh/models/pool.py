"""`PooledBackend`: load model versions on first use and evict the least recently used
under a memory budget, in front of any other backend (one pool per backend kind).

Budget: `PoolConfig.max_bytes` (sum of the versions' sizes, by default the size of
their model.onnx file; 0 = no byte limit) and `max_models` (0 = no count limit). A
version being loaded or evicted counts until its load failed or its unload finished,
so the inner backend never holds more than the budget.

- **Eager** versions (`is_eager(mv)`: the stable and canary arms of the routing table,
  see predmesh/models/eager.py) load when the lifecycle registers them (start, hot reload) and are
  never evicted. Eager versions that do not fit the budget fail that load (a
  misconfiguration: the budget must hold the eager set).
- **Lazy** versions are registered cold by `load` and loaded by the first `infer` that
  needs them: that request (and every request for the same version meanwhile) waits for
  one shared load within its deadline. To make room, idle loaded lazy versions are
  evicted least-recently-used first. A version is idle when no `infer` runs on it here
  and `in_use(mv)` (the lifecycle's drain reference counts) is zero: an in-use version
  is never evicted. When nothing can be evicted the load waits up to `load_timeout_s`
  for a version to become idle, then fails with ResourceExhausted; a request whose
  deadline passes first gets DeadlineExceeded (the load goes on for the next request).
  Both are dependency errors for the gateway, which answers from its fallback chain.
- `unload` (hot reload: removed/replaced versions, after their drain) frees the version
  at once; `close` closes the inner backend.

Ownership: the pool owns the inner backend and one task per load/eviction in progress.
Threading: one event loop; accounting changes happen synchronously between awaits, so
two loads can never reserve the same room.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np

from predmesh.common.deadline import Deadline
from predmesh.common.errors import DeadlineExceeded, ResourceExhausted
from predmesh.models.backend import Backend
from predmesh.models.errors import ModelLoadError, ModelNotReady
from predmesh.models.metrics import PoolMetrics
from predmesh.models.registry import ModelVersion, VersionKey

log = logging.getLogger(__name__)

ROOM_POLL_S = 0.01  # how often a load waiting for room re-checks leases it is not told about


@dataclass(frozen=True, slots=True)
class PoolConfig:
    max_bytes: int = 0  # 0 = unlimited
    max_models: int = 0  # 0 = unlimited
    load_timeout_s: float = 15.0  # how long one load may wait for room

    @property
    def bounded(self) -> bool:
        return self.max_bytes > 0 or self.max_models > 0


@dataclass(slots=True)
class PoolStats:
    """Counters of one pool (also exported as Prometheus metrics)."""

    loads: int = 0
    load_failures: int = 0
    evictions: int = 0
    waited: int = 0  # requests that waited for a load
    loaded_bytes: int = 0
    loaded_models: int = 0
    peak_bytes: int = 0
    peak_models: int = 0
    load_seconds_total: float = 0.0


class State(Enum):
    COLD = "cold"
    LOADING = "loading"
    LOADED = "loaded"
    EVICTING = "evicting"


class _Entry:
    __slots__ = ("active", "eager", "last_used", "mv", "size", "state", "task")

    def __init__(self, mv: ModelVersion, size: int, eager: bool) -> None:
        self.mv = mv
        self.size = size
        self.eager = eager
        self.state = State.COLD
        self.task: asyncio.Task[None] | None = None  # the load or eviction in progress
        self.active = 0  # infer calls on this pool using it now
        self.last_used = 0


def _consume(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # logged by the waiters that saw it; never "exception was never retrieved"


def file_size(mv: ModelVersion) -> int:
    """Default size of a version: its model.onnx in bytes (blocking stat; 0 when missing)."""
    try:
        return mv.onnx_path.stat().st_size
    except OSError:
        return 0


class PooledBackend:
    """Lazy loading + LRU eviction under a budget around `inner` (see module docstring)."""

    def __init__(
        self,
        inner: Backend,
        config: PoolConfig,
        is_eager: Callable[[ModelVersion], bool],
        size_of: Callable[[ModelVersion], int] = file_size,
        metrics: PoolMetrics | None = None,
        in_use: Callable[[ModelVersion], int] | None = None,
    ) -> None:
        self.inner = inner
        self.name = f"pool({inner.name})"
        self.config = config
        self.is_eager = is_eager
        self._size_of = size_of
        self._metrics = metrics
        self.in_use = in_use  # external reference counts (the lifecycle's leases); set after construction
        self._entries: dict[VersionKey, _Entry] = {}
        self._clock = itertools.count(1)
        self._changed = asyncio.Event()
        self.stats = PoolStats()

    # -- accounting ------------------------------------------------------------
    def _held(self) -> list[_Entry]:
        return [e for e in self._entries.values() if e.state is not State.COLD]

    def _fits(self, entry: _Entry) -> bool:
        held = self._held()
        cfg = self.config
        if cfg.max_models and len(held) + 1 > cfg.max_models:
            return False
        return not cfg.max_bytes or sum(e.size for e in held) + entry.size <= cfg.max_bytes

    def _account(self) -> None:
        held = self._held()
        stats = self.stats
        stats.loaded_bytes = sum(e.size for e in held)
        stats.loaded_models = len(held)
        stats.peak_bytes = max(stats.peak_bytes, stats.loaded_bytes)
        stats.peak_models = max(stats.peak_models, stats.loaded_models)
        if self._metrics is not None:
            self._metrics.loaded_bytes.labels(self.inner.name).set(stats.loaded_bytes)
            self._metrics.loaded_models.labels(self.inner.name).set(stats.loaded_models)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _idle(self, entry: _Entry) -> bool:
        return entry.active == 0 and (self.in_use is None or self.in_use(entry.mv) == 0)

    def loaded(self) -> list[str]:
        """Loaded versions, least recently used first (observability, tests)."""
        held = [e for e in self._entries.values() if e.state is State.LOADED]
        return [str(e.mv) for e in sorted(held, key=lambda e: e.last_used)]

    def state(self, mv: ModelVersion) -> State | None:
        entry = self._entries.get(mv.key)
        return entry.state if entry else None

    # -- Backend interface -----------------------------------------------------
    async def load(self, model_version: ModelVersion) -> None:
        """Register a version; eager versions are loaded now (and pinned), lazy ones stay cold."""
        entry = self._entries.get(model_version.key)
        if entry is None:
            size, eager = await asyncio.to_thread(lambda: (self._size_of(model_version), self.is_eager(model_version)))
            entry = _Entry(model_version, size, eager)
            self._entries[model_version.key] = entry
        if entry.eager:
            if entry.state is not State.LOADED and not self._fits(entry) and not self._evictable(entry):
                del self._entries[model_version.key]
                raise ModelLoadError(
                    f"model {model_version} is eager but does not fit the {self.name} budget "
                    f"({self._budget_text()}) next to the other eager versions"
                )
            await self._ensure(entry, None)

    async def infer(
        self, model_version: ModelVersion, batch: np.ndarray, deadline: Deadline | None = None
    ) -> np.ndarray:
        entry = self._entries.get(model_version.key)
        if entry is None:
            raise ModelNotReady(f"model {model_version} is not loaded")
        entry.active += 1
        try:
            if entry.state is not State.LOADED:
                self.stats.waited += 1
                if self._metrics is not None:
                    self._metrics.waited.labels(self.inner.name).inc()
                await self._ensure(entry, deadline)
            entry.last_used = next(self._clock)
            return await self.inner.infer(model_version, batch, deadline)
        finally:
            entry.active -= 1
            if entry.active == 0:
                self._notify()

    async def unload(self, model_version: ModelVersion) -> None:
        entry = self._entries.pop(model_version.key, None)
        if entry is None:
            return
        if entry.task is not None:
            await asyncio.gather(entry.task, return_exceptions=True)
        if entry.state is not State.COLD:
            await self.inner.unload(model_version)
            entry.state = State.COLD
        self._account()
        self._notify()

    async def ready(self, model_version: ModelVersion) -> bool:
        entry = self._entries.get(model_version.key)
        return entry is not None and entry.state is State.LOADED and await self.inner.ready(model_version)

    async def close(self) -> None:
        tasks = [e.task for e in self._entries.values() if e.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._entries.clear()
        self._account()
        await self.inner.close()

    # -- loading and eviction --------------------------------------------------
    async def _ensure(self, entry: _Entry, deadline: Deadline | None) -> None:
        """Return once `entry` is loaded; one shared load task however many callers wait."""
        while entry.state is not State.LOADED:
            if entry.task is None:
                entry.task = asyncio.create_task(self._load(entry), name=f"pool load {entry.mv}")
                entry.task.add_done_callback(_consume)  # every waiter may have given up (deadline)
            task = entry.task
            try:
                if deadline is None:
                    await asyncio.shield(task)
                else:
                    left = deadline.remaining()
                    if left <= 0:
                        raise DeadlineExceeded(f"deadline exceeded while loading model {entry.mv}")
                    await asyncio.wait_for(asyncio.shield(task), left)
            except TimeoutError:
                raise DeadlineExceeded(f"deadline exceeded while loading model {entry.mv}") from None
            if self._entries.get(entry.mv.key) is not entry:
                raise ModelNotReady(f"model {entry.mv} was unloaded")

    async def _load(self, entry: _Entry) -> None:
        try:
            await self._make_room(entry)
            entry.state = State.LOADING
            self._account()
            started = time.perf_counter()
            try:
                await self.inner.load(entry.mv)
            except BaseException:
                entry.state = State.COLD
                self.stats.load_failures += 1
                raise
            elapsed = time.perf_counter() - started
            entry.state = State.LOADED
            entry.last_used = next(self._clock)
            self.stats.loads += 1
            self.stats.load_seconds_total += elapsed
            if self._metrics is not None:
                self._metrics.loads.labels(self.inner.name).inc()
                self._metrics.load_seconds.labels(self.inner.name).observe(elapsed)
            log.info("%s loaded %s in %.3f s (%s)", self.name, entry.mv, elapsed, self._usage_text())
        finally:
            entry.task = None
            self._account()
            self._notify()

    def _evictable(self, entry: _Entry) -> bool:
        """Whether evicting idle lazy versions could make room for `entry`."""
        cfg = self.config
        pinned = [e for e in self._held() if e.eager or not self._idle(e)]
        if cfg.max_models and len(pinned) + 1 > cfg.max_models:
            return False
        return not cfg.max_bytes or sum(e.size for e in pinned) + entry.size <= cfg.max_bytes

    async def _make_room(self, entry: _Entry) -> None:
        give_up = time.monotonic() + self.config.load_timeout_s
        while not self._fits(entry):
            victims = [
                e
                for e in self._entries.values()
                if e.state is State.LOADED and e.task is None and not e.eager and e is not entry and self._idle(e)
            ]
            if victims:
                victim = min(victims, key=lambda e: e.last_used)
                victim.state = State.EVICTING  # still counted until the inner unload finished
                victim.task = asyncio.create_task(self._evict(victim), name=f"pool evict {victim.mv}")
                await asyncio.shield(victim.task)
                continue
            left = give_up - time.monotonic()
            if left <= 0:
                raise ResourceExhausted(
                    f"model {entry.mv} cannot be loaded: the {self.name} budget ({self._budget_text()}) "
                    "is held by versions in use"
                )
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), min(left, ROOM_POLL_S))
            except TimeoutError:
                pass

    async def _evict(self, victim: _Entry) -> None:
        try:
            await self.inner.unload(victim.mv)
        finally:
            victim.state = State.COLD
            victim.task = None
            self.stats.evictions += 1
            if self._metrics is not None:
                self._metrics.evictions.labels(self.inner.name).inc()
            self._account()
            self._notify()
        log.info("%s evicted %s (least recently used; %s)", self.name, victim.mv, self._usage_text())

    def _budget_text(self) -> str:
        cfg = self.config
        return f"{cfg.max_bytes or 'unlimited'} bytes, {cfg.max_models or 'unlimited'} models"

    def _usage_text(self) -> str:
        return f"{self.stats.loaded_models} models, {self.stats.loaded_bytes} bytes held"
