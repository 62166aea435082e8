"""`BatchingBackend`: a `Backend` that micro-batches requests in front of another backend.

One `MicroBatcher` (core/batcher.py) per loaded model version; its batches run on the
inner backend with the batch's deadline. Each request is queued with the priority class of
the Infer call it serves (core/priority.py): real-time before async and batch work. Used in
front of ORT workers (they do not batch themselves) and optionally the in-process backend;
not in front of a Triton whose model config enables dynamic batching (Triton batches there; no double batching).

Ownership: it owns its batchers and the inner backend (closed by `close()`).
Lifecycle: `load` loads the version on the inner backend and starts its batcher;
`unload` drains the batcher (queued requests still run) before unloading the inner
version; `close` drains every batcher, then closes the inner backend.
"""

from __future__ import annotations

import numpy as np

from predmesh.common.deadline import Deadline
from predmesh.models.backend import Backend
from predmesh.models.errors import ModelNotReady
from predmesh.models.registry import ModelVersion, VersionKey
from services.inference.core.batcher import BatcherConfig, BatcherStats, MicroBatcher
from services.inference.core.priority import REQUEST_PRIORITY
from services.inference.metrics import BatchMetrics


class BatchingBackend:
    """Micro-batching wrapper around `inner` (see module docstring)."""

    def __init__(
        self, inner: Backend, config: BatcherConfig | None = None, metrics: BatchMetrics | None = None
    ) -> None:
        self.inner = inner
        self.name = f"batching({inner.name})"
        self.config = config or BatcherConfig()
        self.metrics = metrics
        self._batchers: dict[VersionKey, MicroBatcher] = {}

    async def load(self, model_version: ModelVersion) -> None:
        if model_version.key in self._batchers:
            return
        await self.inner.load(model_version)
        inner = self.inner

        async def run(batch: np.ndarray, deadline: Deadline | None) -> np.ndarray:
            return await inner.infer(model_version, batch, deadline)

        batcher = MicroBatcher(
            run,
            self.config,
            name=f"batcher {model_version}",
            metrics=self.metrics,
            labels=(model_version.name, model_version.version),
        )
        batcher.start()
        self._batchers[model_version.key] = batcher

    async def infer(
        self, model_version: ModelVersion, batch: np.ndarray, deadline: Deadline | None = None
    ) -> np.ndarray:
        batcher = self._batchers.get(model_version.key)
        if batcher is None:
            raise ModelNotReady(f"model {model_version} is not loaded")
        return await batcher.submit(batch, deadline, REQUEST_PRIORITY.get())

    async def unload(self, model_version: ModelVersion) -> None:
        batcher = self._batchers.pop(model_version.key, None)
        if batcher is not None:
            await batcher.stop()
        await self.inner.unload(model_version)

    async def ready(self, model_version: ModelVersion) -> bool:
        return model_version.key in self._batchers and await self.inner.ready(model_version)

    def stats(self, model_version: ModelVersion) -> BatcherStats:
        batcher = self._batchers.get(model_version.key)
        if batcher is None:
            raise ModelNotReady(f"model {model_version} is not loaded")
        return batcher.stats()

    async def close(self) -> None:
        batchers, self._batchers = list(self._batchers.values()), {}
        for batcher in batchers:
            await batcher.stop()
        await self.inner.close()
