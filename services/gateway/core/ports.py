"""Interfaces the gateway core calls; transport supplies gRPC implementations, tests small fakes.

Implementations are async, used from one event loop, and owned by the app (opened at start,
closed at stop). Each call takes the remaining time budget in seconds and must raise a
PredmeshError (Unavailable, DeadlineExceeded, NotFound, InvalidArgument...) on failure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from services.gateway.core.types import FeatureRow, InferenceResult, ModelDescriptor, PredictionRecord, Scalar


class FeatureSource(Protocol):
    async def get(
        self,
        entity_type: str,
        entities: Sequence[tuple[str, dict[str, Scalar]]],
        features: Sequence[str],
        timeout_s: float,
        related: Sequence[Mapping[str, str]] | None = None,
    ) -> list[FeatureRow]:
        """Feature rows aligned with `entities`, values aligned with `features`; `related` (aligned with
        `entities`, or None) gives each row's entities of other types for `type.feature` names."""
        ...


class ModelRunner(Protocol):
    async def describe(self, model: str, version: str, timeout_s: float) -> ModelDescriptor: ...

    async def infer(
        self,
        model: str,
        version: str,
        features: Sequence[str],
        rows: Sequence[Sequence[Scalar]],
        request_id: str,
        timeout_s: float,
        priority: int = 0,
    ) -> InferenceResult:
        """Score `rows`; `priority` (predmesh.v1.Priority of the rows' requests, 0 = unspecified) lets the
        orchestrator's micro-batcher serve real-time rows before async and batch ones."""


class PredictionSink(Protocol):
    def emit_many(self, records: Sequence[PredictionRecord]) -> int:
        """Queue records without blocking (one call per coalesced batch); how many were queued."""
        ...
