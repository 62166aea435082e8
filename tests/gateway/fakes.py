"""Small in-memory fakes of the gateway's ports, for unit tests of the core."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from predmesh.common.errors import PredmeshError
from services.gateway.core.types import (
    FeatureRow,
    InferenceResult,
    ModelDescriptor,
    PredictionRecord,
    PredictOutput,
    Scalar,
    Score,
)
from services.gateway.errors import NotFound, Unavailable

FEATURES = ("amount", "country")


class FakeFeatures:
    """Rows from the request context (amount; country is always "US").

    `gate`: each call waits for it (a test holds a batch in flight). `drop_rows`: answer with
    that many rows fewer than asked (a malformed answer).
    """

    def __init__(self, error: PredmeshError | None = None, drop_rows: int = 0) -> None:
        self.calls: list[tuple[str, list[tuple[str, dict[str, Scalar]]], tuple[str, ...], float]] = []
        self.error = error
        self.drop_rows = drop_rows
        self.gate: asyncio.Event | None = None
        self.related: list[list[dict[str, str]] | None] = []  # `related` of each call

    async def get(
        self,
        entity_type: str,
        entities: Sequence[tuple[str, dict[str, Scalar]]],
        features: Sequence[str],
        timeout_s: float,
        related: Sequence[Mapping[str, str]] | None = None,
    ) -> list[FeatureRow]:
        self.calls.append((entity_type, list(entities), tuple(features), timeout_s))
        self.related.append(None if related is None else [dict(r) for r in related])
        if self.gate is not None:
            await self.gate.wait()
        if self.error:
            raise self.error
        rows = []
        for entity_id, context in entities:
            amount = context.get("amount")
            rows.append(
                FeatureRow(
                    entity_id=entity_id,
                    values=(float(amount) if amount is not None else 0.0, "US"),
                    missing=() if amount is not None else ("amount",),
                )
            )
        return rows[: len(rows) - self.drop_rows]


class FakeModels:
    """Scores a row as amount / 1000 (version 3: amount / 500).

    Knows 'fraud' versions 1, 2, 3 (features amount, country) and 'fraud_ctx' version 1
    (feature amount only). Models named in `failing` raise Unavailable on infer. Versions in
    `gates` wait for their event before answering; versions in `extra_score` answer with one
    score more than rows (a malformed answer).
    """

    def __init__(self, failing: set[str] | None = None, extra_score: set[str] | None = None) -> None:
        self.describe_calls = 0
        self.infer_calls: list[tuple[str, str, int]] = []
        self.infer_timeouts: list[float] = []
        self.infer_priorities: list[int] = []  # priority class of each Infer call
        self.failing = failing if failing is not None else set()
        self.extra_score = extra_score if extra_score is not None else set()
        self.gates: dict[str, asyncio.Event] = {}

    async def describe(self, model: str, version: str, timeout_s: float) -> ModelDescriptor:
        self.describe_calls += 1
        if model == "fraud_ctx" and version in ("", "1"):
            return ModelDescriptor("fraud_ctx", "1", "user", ("amount",), "classifier")
        if model != "fraud" or version not in ("", "1", "2", "3"):
            raise NotFound(f"model {model!r} version {version!r} not found")
        return ModelDescriptor("fraud", version or "2", "user", FEATURES, "classifier")

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
        self.infer_priorities.append(priority)
        self.infer_calls.append((model, version, len(rows)))
        self.infer_timeouts.append(timeout_s)
        gate = self.gates.get(version)
        if gate is not None:
            await gate.wait()
        if model in self.failing:
            raise Unavailable(f"{model} backend down")
        scale = 500.0 if version == "3" else 1000.0
        scores = tuple(
            Score(score=float(row[0]) / scale, label="fraud" if float(row[0]) / scale > 0.5 else "legit")
            for row in rows
        )
        if version in self.extra_score:
            scores += (Score(0.0),)
        return InferenceResult(version=version, scores=scores)


class ListSink:
    """Keeps records up to `capacity`; `batches` holds the size of every `emit_many` call."""

    def __init__(self, capacity: int = 1000) -> None:
        self.records: list[PredictionRecord] = []
        self.batches: list[int] = []
        self.capacity = capacity

    def emit_many(self, records: Sequence[PredictionRecord]) -> int:
        self.batches.append(len(records))
        room = max(0, self.capacity - len(self.records))
        self.records.extend(records[:room])
        return min(room, len(records))


class RecordingCallbacks:
    def __init__(self, failures: int = 0) -> None:
        self.deliveries: list[tuple[object, str, PredictOutput | None, PredmeshError | None]] = []
        self.failures = failures

    async def deliver(
        self,
        target: object,
        request_id: str,
        output: PredictOutput | None,
        error: PredmeshError | None,
        timeout_s: float,
    ) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("callback target down")
        self.deliveries.append((target, request_id, output, error))
