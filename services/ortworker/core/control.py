"""Explicit model control of an ORT worker: the orchestrator decides which versions are loaded.

`ExplicitControl` is a `Backend` wrapper the worker's `ModelLifecycle` drives: the
lifecycle still scans the repository and registers every version (so a version can be
addressed and loaded by name), but `load` from the lifecycle only loads a version that
the orchestrator asked for (a new revision of a wanted version, hot swap); everything
else stays unloaded until a RepositoryModelLoad names it. This is Triton's
`--model-control-mode=explicit`, with the same request shape:

- `load_model(name, versions)`: load exactly `versions` of `name` (None = every
  registered version) and unload its other versions; unknown model: NotFound; a version
  that is not registered: InvalidArgument (nothing changes).
- `unload_model(name)`: unload every version of `name`.
- `index()`: every registered version and whether it is loaded (RepositoryIndex).

The orchestrator's model pool (predmesh/models/pool.py) sends the versions
in a config override `{"version_policy": {"specific": {"versions": [...]}}}`.

Ownership: borrows nothing; owns the inner backend (closed by `close`). Threading: one
event loop; loads/unloads of one model are serialized by a per-model lock.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from predmesh.common.deadline import Deadline
from predmesh.common.errors import InvalidArgument
from predmesh.models.backend import Backend
from predmesh.models.lifecycle import ModelLifecycle
from predmesh.models.registry import ModelRegistry, ModelVersion


@dataclass(frozen=True, slots=True)
class IndexEntry:
    name: str
    version: str
    ready: bool
    size_bytes: int


def versions_from_config(config: str) -> set[str] | None:
    """The `version_policy.specific.versions` of a JSON model config override (None: no policy = all)."""
    if not config:
        return None
    try:
        data = json.loads(config)
    except json.JSONDecodeError as err:
        raise InvalidArgument(f"model config override is not JSON: {err.msg}") from None
    policy = data.get("version_policy") if isinstance(data, dict) else None
    if policy is None:
        return None
    if not isinstance(policy, dict):
        raise InvalidArgument("version_policy must be an object")
    if "all" in policy:
        return None
    specific = policy.get("specific")
    if not isinstance(specific, dict) or not isinstance(specific.get("versions"), list):
        raise InvalidArgument("this worker supports version_policy {all} or {specific: {versions: [...]}}")
    return {str(v) for v in specific["versions"]}


class ExplicitControl:
    """Loads only what the orchestrator asked for (see module docstring)."""

    def __init__(self, inner: Backend, registry: Callable[[], ModelRegistry]) -> None:
        self.inner = inner
        self.name = f"explicit({inner.name})"
        self._registry = registry
        self._wanted: dict[str, set[str]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # -- Backend interface (driven by the lifecycle) ------------------------------
    async def load(self, model_version: ModelVersion) -> None:
        if model_version.version in self._wanted.get(model_version.name, set()):
            await self.inner.load(model_version)  # a new revision of a version the orchestrator wants

    async def infer(
        self, model_version: ModelVersion, batch: np.ndarray, deadline: Deadline | None = None
    ) -> np.ndarray:
        return await self.inner.infer(model_version, batch, deadline)

    async def unload(self, model_version: ModelVersion) -> None:
        await self.inner.unload(model_version)

    async def ready(self, model_version: ModelVersion) -> bool:
        return await self.inner.ready(model_version)

    async def close(self) -> None:
        await self.inner.close()

    # -- repository control (RepositoryModelLoad/Unload/Index) --------------------
    async def load_model(self, name: str, versions: set[str] | None) -> None:
        registry = self._registry()
        registered = {mv.version: mv for mv in registry.all() if mv.name == name}
        if not registered:
            registry.get(name)  # raises ModelNotFound
        wanted = set(registered) if versions is None else versions
        unknown = sorted(wanted - set(registered))
        if unknown:
            raise InvalidArgument(f"model {name} has no version {', '.join(unknown)} in this worker's repository")
        async with self._locks.setdefault(name, asyncio.Lock()):
            self._wanted[name] = wanted
            for version, mv in registered.items():
                if version in wanted:
                    await self.inner.load(mv)
                else:
                    await self.inner.unload(mv)

    async def unload_model(self, name: str) -> None:
        async with self._locks.setdefault(name, asyncio.Lock()):
            self._wanted.pop(name, None)
            for mv in self._registry().all():
                if mv.name == name:
                    await self.inner.unload(mv)

    async def index(self) -> list[IndexEntry]:
        return await _index(self._registry().all(), self.inner)


async def index(lifecycle: ModelLifecycle, backend: Backend) -> list[IndexEntry]:
    """RepositoryIndex entries of a worker without explicit control: registered versions, loaded or not."""
    return await _index(lifecycle.snapshot.registry.all(), backend)


async def _index(versions: list[ModelVersion], backend: Backend) -> list[IndexEntry]:
    sizes = await asyncio.to_thread(lambda: [_size(mv) for mv in versions])
    return [
        IndexEntry(mv.name, mv.version, await backend.ready(mv), size) for mv, size in zip(versions, sizes, strict=True)
    ]


def _size(mv: ModelVersion) -> int:
    try:
        return mv.onnx_path.stat().st_size
    except OSError:
        return 0
