"""What the client returns: plain frozen dataclasses mirroring the API's responses.

Each result keeps the protobuf message it came from as `raw` (fields added to the API later are
there before this module knows them). `degraded` is always present: True when the answer did not
come from the requested path (fallback, defaults); `degraded_reason` says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Scalar = float | int | bool | str
Context = Mapping[str, Scalar]


@dataclass(frozen=True)
class Score:
    score: float
    scores: tuple[float, ...] = ()
    label: str = ""


@dataclass(frozen=True)
class Timings:
    features_ms: float = 0.0
    inference_ms: float = 0.0
    total_ms: float = 0.0


@dataclass(frozen=True)
class Prediction:
    """One scored entity (PredictResponse)."""

    request_id: str
    model: str
    model_version: str
    prediction: Score
    degraded: bool
    degraded_reason: str
    defaulted_features: tuple[str, ...]
    timings: Timings
    entity_id: str
    arm: str
    missing_features: tuple[str, ...]
    raw: Any = field(default=None, repr=False, compare=False)

    @property
    def score(self) -> float:
        return self.prediction.score

    @property
    def label(self) -> str:
        return self.prediction.label


@dataclass(frozen=True)
class BatchPrediction:
    """PredictBatch's answer: one Prediction per item, in request order."""

    request_id: str
    results: tuple[Prediction, ...]
    timings: Timings
    raw: Any = field(default=None, repr=False, compare=False)

    @property
    def degraded(self) -> bool:
        """True when any item is degraded."""
        return any(r.degraded for r in self.results)


@dataclass(frozen=True)
class BatchItem:
    """One entity of a batch, with its own request-time features."""

    entity_id: str
    context: Context = field(default_factory=dict)


@dataclass(frozen=True)
class VersionHealth:
    version: str
    weight_percent: float
    roles: tuple[str, ...]
    loaded: bool
    kind: str
    breaker: str
    error: str


@dataclass(frozen=True)
class ModelHealth:
    """GetModelHealth's answer (see protos/predmesh/v1/health.proto); figures are the answering gateway's."""

    model: str
    healthy: bool
    versions: tuple[VersionHealth, ...]
    feature_store_reachable: bool
    feature_store_error: str
    last_inference_ms: float
    p99_inference_ms: float
    requests_in_window: int
    degraded_ratio: float
    window_s: float
    breakers: Mapping[str, str]
    fallback: tuple[str, ...]
    raw: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class PredictionStatus:
    """GetPrediction's answer for a PredictAsync request id: `state` is "PENDING", "DONE" (then
    `result` is set) or "FAILED" (then `error_code` / `error_message` are)."""

    request_id: str
    state: str
    result: Prediction | None = None
    error_code: str = ""
    error_message: str = ""
    raw: Any = field(default=None, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """True once the request was answered (DONE or FAILED): polling can stop."""
        return self.state in ("DONE", "FAILED")
