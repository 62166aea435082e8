"""What a report shows: plain values, filled by `collect` and drawn by `page`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCORE_BINS = 10  # the score_distribution view's bins: [0, 0.1), ..., [0.9, 1]


@dataclass(frozen=True, slots=True)
class ArmRow:
    """One (version, arm) of the model over the report's window (arm_stats + outcome_quality)."""

    version: str
    arm: str
    n: int
    rate_per_s: float
    p50_ms: float
    p99_ms: float
    bad_rate: float
    mean_score: float
    outcomes: int = 0
    auc: float | None = None

    @property
    def key(self) -> str:
        return f"{self.version}/{self.arm}"


@dataclass(frozen=True, slots=True)
class ScoreSeries:
    """Predictions per score bin of one (version, arm)."""

    version: str
    arm: str
    counts: tuple[int, ...]

    @property
    def key(self) -> str:
        return f"{self.version}/{self.arm}"


@dataclass(frozen=True, slots=True)
class DriftRow:
    """One PSI: of the scores (`name` "score") or of a feature, for one model version."""

    version: str
    name: str
    psi: float
    source: str  # "store" (predictions in the store vs reference.json) | "monitor" (its /metrics)


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """One rollout controller decision (rollout_decisions view)."""

    ts_s: float
    stable_version: str
    canary_version: str
    step: int
    weight: float  # canary weight (%) of the step evaluated
    action: str  # start | promote | rollback
    reason: str
    weight_after: float  # the canary's weight (%) once the decision applied
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WebhookRow:
    """One retraining-webhook call of the drift monitor (retrain_webhooks view)."""

    ts_s: float  # when the call ended
    version: str
    score_psi: float | None
    max_feature_psi: float | None
    drifted: str  # "score" and/or feature names, comma-separated
    attempts: int
    status: str  # delivered | failed | refused
    http_status: int
    error: str


@dataclass(slots=True)
class ReportData:
    model: str
    generated_s: float
    since_s: float = 0.0
    arms: list[ArmRow] = field(default_factory=list)
    scores: list[ScoreSeries] = field(default_factory=list)
    drift: list[DriftRow] = field(default_factory=list)
    psi_alert: float = 0.25
    decisions: list[DecisionRow] = field(default_factory=list)
    webhooks: list[WebhookRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # where numbers came from, what is missing
