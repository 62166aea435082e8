"""Domain types of the gateway (plain dataclasses; transport converts to/from protobuf)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

Scalar = float | str | bool


class Arm(StrEnum):
    """Which path answered: a routed live arm, a pinned version, the fallback chain, or a shadow."""

    STABLE = "stable"
    CANARY = "canary"
    PINNED = "pinned"
    FALLBACK = "fallback"
    SHADOW = "shadow"


@dataclass(frozen=True, slots=True)
class PredictInput:
    request_id: str
    model: str
    version: str
    entity_id: str
    context: dict[str, Scalar]
    # Entities of other types (entity type -> id) whose `type.feature` features the model reads.
    entities: Mapping[str, str] = field(default_factory=dict)
    priority: int = 0  # resolved priority class (core/priority.py Priority), logged with the prediction


@dataclass(frozen=True, slots=True)
class ModelDescriptor:
    """What the gateway needs to know about a model version to assemble its features."""

    name: str
    version: str
    entity_type: str
    features: tuple[str, ...]
    task: str


@dataclass(frozen=True, slots=True)
class FeatureRow:
    entity_id: str
    values: tuple[Scalar, ...]
    missing: tuple[str, ...] = ()
    invalid: tuple[str, ...] = ()
    entity_unknown: bool = False
    store_missing: tuple[str, ...] = ()  # store-sourced subset of `missing` (see core/degradation.py)
    stale: tuple[str, ...] = ()  # stored values older than their registry max_age_s (defaulted)

    @property
    def defaulted(self) -> tuple[str, ...]:
        return self.missing + self.invalid + self.stale


@dataclass(frozen=True, slots=True)
class Score:
    score: float
    scores: tuple[float, ...] = ()
    label: str = ""


@dataclass(frozen=True, slots=True)
class InferenceResult:
    version: str
    scores: tuple[Score, ...]


@dataclass(frozen=True, slots=True)
class Timings:
    features_ms: float = 0.0
    inference_ms: float = 0.0
    total_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class PredictOutput:
    request_id: str
    model: str
    model_version: str
    entity_id: str
    score: Score
    arm: Arm
    timings: Timings
    defaulted_features: tuple[str, ...] = ()
    degraded: bool = False
    degraded_reason: str = ""
    missing_features: tuple[str, ...] = ()  # stored features absent for this entity (subset of defaulted)
    stale_features: tuple[str, ...] = ()  # stored features older than max_age_s (subset of defaulted)
    entities: Mapping[str, str] = field(default_factory=dict)  # the request's other entities (logged)
    priority: int = 0  # the request's priority class (logged, not returned)
    cached: bool = False  # served from the prediction cache (core/cache.py)


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """One joined log record per scored entity (see events.proto PredictionEvent)."""

    request_id: str
    model: str
    model_version: str
    arm: str
    entity_id: str
    features_hash: str
    score: Score
    latency_ms: float
    degraded: bool
    degraded_reason: str
    timestamp_s: float
    defaulted_features: tuple[str, ...] = field(default_factory=tuple)
    trace_id: str = ""
    # W3C traceparent of the span that produced the record ('' when not traced).
    traceparent: str = ""
    # Feature values actually scored, for drift monitoring; only for a sample of records.
    features: tuple[tuple[str, Scalar], ...] = ()
    stale_features: tuple[str, ...] = ()
    entities: Mapping[str, str] = field(default_factory=dict)
    priority: int = 0  # priority class the request was served in (PredictionEvent.priority)
    cached: bool = False  # served from the prediction cache (PredictionEvent.cached)
