"""Model lifecycle: the served registry snapshot, hot reload, warm-up and draining.

`ModelLifecycle` owns the *current snapshot* (an immutable `Snapshot`: a
`ModelRegistry`, a generation number and per-version `Prepared` pre/post-processing).
Readers take `lifecycle.snapshot` (one attribute read, no lock) and use it for the
whole request; a reload builds a complete new snapshot and swaps the reference in one
assignment on the event loop. No lock is ever held across an await by readers; reloads
are serialized by one asyncio.Lock that only reloads take.

Reload (`reload()`, called by the repository poller every `poll_interval_s`, by the
ReloadModels RPC, or by tests) diffs the repository scan against the snapshot by
`ModelVersion.key` (name, version, file revision):

- added (new version, or a version directory replaced in place = new revision): loaded
  on its backend and warmed up (`warmup_runs` dummy batches of `warmup_rows` zero rows;
  output that contradicts the spec is logged) BEFORE the new snapshot is published, so it
  never becomes visible or default cold. Any load/warm-up failure (or an invalid
  repository) rejects the whole reload: the old snapshot keeps serving, the error is
  logged and returned, and the same repository state is not retried until it changes.
- removed: not listed and never the default from the new snapshot on; requests that
  pin it by number keep being served from the draining set for `drain_s`, then get
  NOT_FOUND; once the drain period is over and its reference count (in-flight requests,
  `lease()`) is zero, it is unloaded from its backend. A replaced revision drains the
  same way (pins go to the new revision at once).

Ownership: the lifecycle borrows the backend (the composition root closes it) and owns
its poll task and drain tasks (`stop()` cancels them and unloads every version it
loaded). Threading: one event loop; the scan runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from predmesh.common.deadline import Deadline
from predmesh.models.backend import Backend
from predmesh.models.ensemble import Combiner
from predmesh.models.errors import ModelExecutionError, ModelNotFound, VersionNotFound
from predmesh.models.postprocess import Postprocessor
from predmesh.models.preprocess import Preprocessor
from predmesh.models.registry import ModelRegistry, ModelVersion, VersionKey, version_key
from predmesh.models.spec import ONNX_FILE, SPEC_FILE

log = logging.getLogger(__name__)

Scan = Callable[[], ModelRegistry]


@dataclass(frozen=True, slots=True)
class Prepared:
    """Per-version processing: preprocessor (plain models), postprocessor, combiner (ensembles)."""

    pre: Preprocessor | None
    post: Postprocessor
    combiner: Combiner | None


def prepare(mv: ModelVersion, registry: ModelRegistry) -> Prepared:
    if mv.is_ensemble:
        members = [m.spec for m in registry.members(mv)]
        return Prepared(pre=None, post=Postprocessor(mv.spec, str(mv)), combiner=Combiner(mv.spec, members))
    return Prepared(pre=Preprocessor(mv.spec), post=Postprocessor(mv.spec, str(mv)), combiner=None)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What is served: registry + prepared processing per version key. Immutable."""

    registry: ModelRegistry
    generation: int
    prepared: dict[VersionKey, Prepared]


@dataclass(frozen=True, slots=True)
class ReloadResult:
    generation: int
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    error: str = ""


def repository_fingerprint(root: Path) -> tuple[tuple[str, int, int], ...]:
    """Cheap change detector: (path, size, mtime) of every model.yaml/model.onnx (blocking)."""
    out: list[tuple[str, int, int]] = []
    try:
        for model in os.scandir(root):
            if not model.is_dir() or model.name.startswith("."):
                continue
            for version in os.scandir(model.path):
                if not (version.is_dir() and version.name.isdigit()):
                    continue
                for name in (SPEC_FILE, ONNX_FILE):
                    try:
                        st = os.stat(os.path.join(version.path, name))
                    except OSError:
                        continue
                    out.append((f"{model.name}/{version.name}/{name}", st.st_size, st.st_mtime_ns))
    except OSError:
        return ()
    return tuple(sorted(out))


@dataclass(frozen=True, slots=True)
class _Drain:
    mv: ModelVersion
    snapshot: Snapshot  # the last snapshot that served it (members of an ensemble included)


class ModelLifecycle:
    """Serves registry snapshots and swaps them safely (see module docstring)."""

    def __init__(
        self,
        backend: Backend,
        scan: Scan,
        root: Path | None = None,
        drain_s: float = 5.0,
        warmup_runs: int = 2,
        warmup_rows: int = 4,
        load_timeout_s: float = 15.0,
    ) -> None:
        self._backend = backend
        self._scan = scan
        self._root = root
        self._drain_s = drain_s
        self._warmup_runs = warmup_runs
        self._warmup_rows = warmup_rows
        self._load_timeout_s = load_timeout_s
        self.snapshot = Snapshot(ModelRegistry([]), 0, {})
        self._draining: dict[tuple[str, str], _Drain] = {}
        self._drain_tasks: set[asyncio.Task[None]] = set()
        self._refs: dict[VersionKey, int] = {}
        self._idle: dict[VersionKey, asyncio.Event] = {}
        self._reload_lock = asyncio.Lock()
        self._seen: tuple[tuple[str, int, int], ...] | None = None
        self._poller: asyncio.Task[None] | None = None
        self.unloaded: list[str] = []  # "name:version" in unload order (observability, tests)

    # -- reading -------------------------------------------------------------
    def resolve(self, name: str, version: str = "") -> tuple[ModelVersion, Snapshot]:
        """The version a request addresses ("" = default) and the snapshot that resolved it.

        A version pinned by number that was removed (or replaced) and is still draining
        resolves to the draining revision; once it is unloaded: NotFound."""
        snap = self.snapshot
        try:
            return snap.registry.get(name, version), snap
        except (ModelNotFound, VersionNotFound):
            drain = self._draining.get((name, version)) if version else None
            if drain is None:
                raise
            return drain.mv, drain.snapshot

    def draining(self) -> list[str]:
        return [str(d.mv) for d in self._draining.values()]

    @contextmanager
    def lease(self, versions: Iterable[ModelVersion]) -> Iterator[None]:
        """Count one in-flight use of each version; a drained version unloads at zero."""
        keys = [mv.key for mv in versions]
        for key in keys:
            self._refs[key] = self._refs.get(key, 0) + 1
        try:
            yield
        finally:
            for key in keys:
                left = self._refs[key] - 1
                if left:
                    self._refs[key] = left
                else:
                    del self._refs[key]
                    event = self._idle.pop(key, None)
                    if event is not None:
                        event.set()

    def in_flight(self, mv: ModelVersion) -> int:
        return self._refs.get(mv.key, 0)

    # -- loading -------------------------------------------------------------
    async def start(self) -> ReloadResult:
        """First load: every version must load (raises on failure, nothing is left loaded)."""
        result = await self.reload(strict=True)
        return result

    def start_polling(self, interval_s: float) -> None:
        """Poll the repository every `interval_s` and reload when its files changed."""
        if self._root is None or interval_s <= 0 or self._poller is not None:
            return
        self._poller = asyncio.create_task(self._poll(interval_s), name="model-repository-poll")

    async def _poll(self, interval_s: float) -> None:
        assert self._root is not None
        root = self._root
        while True:
            await asyncio.sleep(interval_s)
            try:
                current = await asyncio.to_thread(repository_fingerprint, root)
                if current != self._seen:
                    await self.reload()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep polling; the old snapshot keeps serving
                log.exception("model repository poll failed")

    async def reload(self, strict: bool = False) -> ReloadResult:
        """Scan the repository and swap in what changed (see module docstring)."""
        async with self._reload_lock:
            fingerprint = await asyncio.to_thread(repository_fingerprint, self._root) if self._root else None
            try:
                registry = await asyncio.to_thread(self._scan)
                return await self._apply(registry)
            except Exception as err:
                if strict:
                    raise
                log.error("model reload rejected, still serving generation %d: %s", self.snapshot.generation, err)
                return ReloadResult(self.snapshot.generation, error=str(err))
            finally:
                self._seen = fingerprint

    async def _apply(self, registry: ModelRegistry) -> ReloadResult:
        old = self.snapshot
        old_keys = {mv.key: mv for mv in old.registry.all()}
        new_keys = {mv.key: mv for mv in registry.all()}
        added = [mv for key, mv in new_keys.items() if key not in old_keys]
        removed = [mv for key, mv in old_keys.items() if key not in new_keys]
        if not added and not removed:
            return ReloadResult(old.generation)
        loaded: list[ModelVersion] = []
        prepared = {key: old.prepared[key] for key in new_keys if key in old.prepared}
        try:
            for mv in sorted(added, key=lambda m: m.is_ensemble):  # plain models before ensembles
                prepared[mv.key] = prepare(mv, registry)
                if mv.is_ensemble:
                    continue
                await self._backend.load(mv)
                loaded.append(mv)
                await self._warm_up(mv, prepared[mv.key])
        except BaseException:
            for mv in loaded:
                if mv.key not in old_keys and not self._is_draining(mv):
                    await self._backend.unload(mv)
            raise
        snap = Snapshot(registry, old.generation + 1, prepared)
        self.snapshot = snap  # the atomic swap
        for mv in added:
            self._draining.pop(mv.ref, None)
        replaced = []
        for mv in removed:
            if registry.find(mv.name, mv.version) is not None:
                replaced.append(str(mv))
            else:
                self._draining[mv.ref] = _Drain(mv, old)
            task = asyncio.create_task(self._drain(mv), name=f"drain {mv}")
            self._drain_tasks.add(task)
            task.add_done_callback(self._drain_tasks.discard)
        result = ReloadResult(
            snap.generation,
            added=tuple(sorted(str(mv) for mv in added if str(mv) not in replaced)),
            removed=tuple(sorted(str(mv) for mv in removed if str(mv) not in replaced)),
            replaced=tuple(sorted(replaced)),
        )
        log.info(
            "models generation %d: added %s, removed %s (draining %.1f s), replaced %s",
            snap.generation,
            list(result.added),
            list(result.removed),
            self._drain_s,
            list(result.replaced),
        )
        return result

    async def _warm_up(self, mv: ModelVersion, prepared: Prepared) -> None:
        if self._warmup_runs <= 0 or not await self._backend.ready(mv):
            return  # not loaded: a model pool loads this version on first use
        batch = np.zeros((self._warmup_rows, mv.spec.input_width), dtype=np.float32)
        for _ in range(self._warmup_runs):
            raw = await self._backend.infer(mv, batch, Deadline.after(self._load_timeout_s))
        try:
            prepared.post.normalize(raw, len(batch))
        except ModelExecutionError as err:  # served anyway: its requests will answer INTERNAL
            log.warning("warm-up of %s: %s", mv, err)

    def _is_draining(self, mv: ModelVersion) -> bool:
        return any(d.mv.key == mv.key for d in self._draining.values())

    async def _drain(self, mv: ModelVersion) -> None:
        await asyncio.sleep(self._drain_s)
        drain = self._draining.get(mv.ref)
        if drain is not None and drain.mv.key == mv.key:
            del self._draining[mv.ref]  # pins by number: NOT_FOUND from now on
        while self._refs.get(mv.key, 0) > 0:
            await self._idle.setdefault(mv.key, asyncio.Event()).wait()
        if any(m.key == mv.key for m in self.snapshot.registry.all()):
            return  # re-added with the same files while draining: keep it
        if not mv.is_ensemble:
            await self._backend.unload(mv)
        self.unloaded.append(str(mv))
        log.info("unloaded drained model %s", mv)

    async def stop(self) -> None:
        """Stop polling and draining; unload every version this lifecycle loaded."""
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None
        tasks = list(self._drain_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        versions = {mv.key: mv for mv in self.snapshot.registry.all()}
        for drain in self._draining.values():
            versions.setdefault(drain.mv.key, drain.mv)
        self._draining.clear()
        for mv in sorted(versions.values(), key=lambda m: (m.name, version_key(m.version))):
            if not mv.is_ensemble:
                await self._backend.unload(mv)
        self.snapshot = Snapshot(ModelRegistry([]), self.snapshot.generation + 1, {})
