"""`InferenceCore`: validate a request, preprocess, run the backend, postprocess.

Ownership: the core holds the registry and one Preprocessor/Postprocessor per model
version; it borrows the backend (the composition root creates, loads and closes it).
Threading: call its coroutines from one event loop. Small requests are pre/post-
processed on the loop (vectorized, microseconds per row); requests larger than
`offload_rows` are processed in a worker thread so the loop never stalls.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from predmesh.common.deadline import Deadline
from predmesh.common.errors import InvalidArgument
from services.inference.core.backend import Backend
from services.inference.core.postprocess import Postprocessor, Prediction
from services.inference.core.preprocess import FeatureValue, Preprocessor
from services.inference.core.registry import ModelRegistry, ModelVersion

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """Description of one model version (domain twin of `predmesh.v1.ModelInfo`)."""

    name: str
    versions: tuple[str, ...]
    version: str
    task: str
    entity_type: str
    features: tuple[str, ...]
    class_labels: tuple[str, ...]
    kind: str


class InferenceCore:
    """Model registry + pre/post-processing around one execution backend."""

    def __init__(self, registry: ModelRegistry, backend: Backend, max_rows: int = 1024, offload_rows: int = 256):
        self.registry = registry
        self._backend = backend
        self._max_rows = max_rows
        self._offload_rows = offload_rows
        self._pre: dict[tuple[str, str], Preprocessor] = {}
        self._post: dict[tuple[str, str], Postprocessor] = {}
        for item in registry.all():
            self._pre[item.key] = Preprocessor(item.spec)
            self._post[item.key] = Postprocessor(item.spec, str(item))

    async def load_all(self) -> None:
        """Load every registered version into the backend (fails on the first error)."""
        for item in self.registry.all():
            await self._backend.load(item)

    async def unload_all(self) -> None:
        for item in self.registry.all():
            await self._backend.unload(item)

    async def ready(self) -> bool:
        for item in self.registry.all():
            if not await self._backend.ready(item):
                return False
        return True

    async def infer(
        self,
        model: str,
        version: str,
        feature_names: Sequence[str],
        rows: Sequence[Sequence[FeatureValue]],
        deadline: Deadline | None = None,
    ) -> tuple[str, list[Prediction]]:
        """Score `rows` (aligned with `feature_names`) with `model` at `version` ("" = default).

        Returns the version used and one prediction per row, in order. Raises NotFound
        for an unknown model/version and InvalidArgument for empty/oversized requests or
        missing/ill-typed features.
        """
        target = self.registry.get(model, version)
        if not rows:
            raise InvalidArgument("no rows to score")
        if len(rows) > self._max_rows:
            raise InvalidArgument(f"{len(rows)} rows exceed the limit of {self._max_rows} per request")
        preprocess = self._pre[target.key]
        if len(rows) > self._offload_rows:
            batch = await asyncio.to_thread(preprocess.transform_rows, feature_names, rows)
        else:
            batch = preprocess.transform_rows(feature_names, rows)
        if deadline is not None:
            deadline.budget(what=f"running {target}")
        raw = await self._backend.infer(target, batch, deadline)
        return target.version, await self._postprocess(target, raw, len(rows))

    async def _postprocess(self, target: ModelVersion, raw: np.ndarray, n_rows: int) -> list[Prediction]:
        post = self._post[target.key]
        if n_rows > self._offload_rows:
            return await asyncio.to_thread(post, raw, n_rows)
        return post(raw, n_rows)

    def list_models(self) -> list[ModelInfo]:
        """The default version of every model."""
        return [self.get_model(name) for name in self.registry.names()]

    def get_model(self, name: str, version: str = "") -> ModelInfo:
        target = self.registry.get(name, version)
        spec = target.spec
        return ModelInfo(
            name=spec.name,
            versions=tuple(self.registry.versions(name)),
            version=spec.version,
            task=spec.task,
            entity_type=spec.entity_type,
            features=spec.feature_names,
            class_labels=spec.class_labels,
            kind=spec.kind,
        )
