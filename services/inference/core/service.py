"""`InferenceCore`: validate a request, preprocess, run the backend, postprocess.

Ownership: the core borrows the `ModelLifecycle` (served snapshot: registry and one
Preprocessor/Postprocessor/Combiner per version; loading, hot reload, draining) and
the backend (the composition root creates and closes both). Ensembles run their
members concurrently (asyncio.gather), each on its own backend, each on its own
preprocessed matrix of the same rows; the combined output goes through the ensemble's
postprocess.
Threading: call its coroutines from one event loop. Small requests are pre/post-
processed on the loop (vectorized, microseconds per row); requests larger than
`offload_rows` are processed in a worker thread so the loop never stalls.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from predmesh.common.deadline import Deadline
from predmesh.common.errors import InvalidArgument, NotFound
from predmesh.models.backend import Backend
from predmesh.models.lifecycle import ModelLifecycle, Snapshot
from predmesh.models.postprocess import Prediction
from predmesh.models.preprocess import FeatureValue
from predmesh.models.registry import ModelRegistry, ModelVersion

log = logging.getLogger(__name__)
T = TypeVar("T")


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
    """Model lifecycle (served snapshot) + pre/post-processing around the backends."""

    def __init__(self, lifecycle: ModelLifecycle, backend: Backend, max_rows: int = 1024, offload_rows: int = 256):
        self.lifecycle = lifecycle
        self._backend = backend
        self._max_rows = max_rows
        self._offload_rows = offload_rows

    @property
    def registry(self) -> ModelRegistry:
        """The registry of the snapshot being served now."""
        return self.lifecycle.snapshot.registry

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
        missing/ill-typed features. The whole request uses one snapshot, and holds a
        lease on every version it runs (an ensemble: its members too) until it is done.
        """
        target, snap = self.lifecycle.resolve(model, version)
        if not rows:
            raise InvalidArgument("no rows to score")
        if len(rows) > self._max_rows:
            raise InvalidArgument(f"{len(rows)} rows exceed the limit of {self._max_rows} per request")
        with self.lifecycle.lease(snap.registry.closure(target)):
            offload = len(rows) > self._offload_rows
            if deadline is not None:
                deadline.budget(what=f"running {target}")
            normalized = await self._run(snap, target, feature_names, rows, deadline, offload)
            post = snap.prepared[target.key].post
            if target.is_ensemble:
                predictions = await self._maybe_thread(offload, post.predictions, normalized)
            else:
                predictions = await self._maybe_thread(offload, post, normalized, len(rows))
        return target.version, predictions

    @staticmethod
    async def _maybe_thread(offload: bool, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args) if offload else fn(*args)

    async def _run(
        self,
        snap: Snapshot,
        mv: ModelVersion,
        feature_names: Sequence[str],
        rows: Sequence[Sequence[FeatureValue]],
        deadline: Deadline | None,
        offload: bool,
    ) -> np.ndarray:
        """Raw backend output of a plain model; combined normalized output of an ensemble."""
        prepared = snap.prepared[mv.key]
        if prepared.combiner is None:
            assert prepared.pre is not None
            batch = await self._maybe_thread(offload, prepared.pre.transform_rows, feature_names, rows)
            return await self._backend.infer(mv, batch, deadline)
        members = snap.registry.members(mv)
        outputs = await asyncio.gather(
            *(self._member(snap, m, feature_names, rows, deadline, offload) for m in members)
        )
        return prepared.combiner(outputs)

    async def _member(
        self,
        snap: Snapshot,
        mv: ModelVersion,
        feature_names: Sequence[str],
        rows: Sequence[Sequence[FeatureValue]],
        deadline: Deadline | None,
        offload: bool,
    ) -> np.ndarray:
        raw = await self._run(snap, mv, feature_names, rows, deadline, offload)
        if mv.is_ensemble:
            return raw
        return snap.prepared[mv.key].post.normalize(raw, len(rows))

    def list_models(self) -> list[ModelInfo]:
        """The default version of every model."""
        registry = self.registry
        return [self._info(registry, registry.get(name)) for name in registry.names()]

    def get_model(self, name: str, version: str = "") -> ModelInfo:
        target, snap = self.lifecycle.resolve(name, version)
        return self._info(snap.registry, target)

    def _info(self, registry: ModelRegistry, target: ModelVersion) -> ModelInfo:
        spec = target.spec
        try:
            versions = tuple(self.registry.versions(spec.name))
        except NotFound:  # pinned and draining: no longer listed
            versions = ()
        return ModelInfo(
            name=spec.name,
            versions=versions,
            version=spec.version,
            task=spec.task,
            entity_type=spec.entity_type,
            features=registry.features(target),
            class_labels=spec.class_labels,
            kind=spec.kind,
        )
