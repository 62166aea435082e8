"""The analytics views: SQL over the store's tables, per model / version / arm and time window.

Each function returns one SELECT (ClickHouse SQL, the same on chdb and a server) reading the
deduplicated tables (`FINAL`). `since_s` / `until_s` bound the prediction time (unix seconds;
0 = unbounded); `model` = "" means every model. Results are plain rows (see `AnalyticsStore`).

| view | columns |
|---|---|
| `arm_stats` | model, model_version, arm, n, rate_per_s, p50_ms, p90_ms, p99_ms, bad_rate, degraded_rate, mean_score |
| `score_distribution` | model, model_version, arm, bin (lower edge, width 0.1), n |
| `shadow_agreement` | model, live_version, shadow_version, n, mean_abs_diff, p99_abs_diff, label_agreement |
| `outcome_quality` | model, model_version, arm, outcomes, positives, auc, accuracy, mean_score, outcome_rate |
| `score_bins` | model, model_version, arm, bin (index into given edges, outer bins open-ended), n |
| `rollout_decisions` | ts_s, model, stable_version, canary_version, step, weight, action, reason, evidence |
| `retrain_webhooks` | ts_s, detected_s, model, model_version, delivery_id, score_psi, max_feature_psi, psi_alert, |
| | drifted, attempts, status (delivered / failed / refused), http_status, error |

`bad_rate` is the error+degraded rate of logged predictions: a prediction the gateway answered
from its fallback chain (or with missing features) is logged degraded; a request that failed
outright is not in the log and is counted by the gateway's Prometheus metrics instead.
AUC is ClickHouse's `arrayAUC` over (score, outcome value >= 0.5) of the predictions that
have an outcome with a numeric value; accuracy compares the predicted label with the outcome's.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.sink.core.store import quote


def _where(model: str, since_s: float, until_s: float, alias: str = "") -> str:
    a = f"{alias}." if alias else ""
    clauses = ["1"]
    if model:
        clauses.append(f"{a}model = {quote(model)}")
    if since_s:
        clauses.append(f"{a}ts >= toDateTime64({since_s:.3f}, 3, 'UTC')")
    if until_s:
        clauses.append(f"{a}ts < toDateTime64({until_s:.3f}, 3, 'UTC')")
    return " AND ".join(clauses)


def arm_stats(db: str, model: str = "", since_s: float = 0.0, until_s: float = 0.0) -> str:
    window = "greatest(0.001, (toUnixTimestamp64Milli(max(ts)) - toUnixTimestamp64Milli(min(ts))) / 1000)"
    return f"""
SELECT model, model_version, arm, count() AS n,
       n / {window} AS rate_per_s,
       quantile(0.5)(latency_ms) AS p50_ms, quantile(0.9)(latency_ms) AS p90_ms,
       quantile(0.99)(latency_ms) AS p99_ms,
       avg(degraded) AS bad_rate, avg(degraded) AS degraded_rate, avg(score) AS mean_score
FROM {db}.predictions FINAL
WHERE {_where(model, since_s, until_s)}
GROUP BY model, model_version, arm
ORDER BY model, model_version, arm"""


def score_distribution(db: str, model: str = "", since_s: float = 0.0, until_s: float = 0.0) -> str:
    return f"""
SELECT model, model_version, arm, least(floor(score * 10) / 10, 0.9) AS bin, count() AS n
FROM {db}.predictions FINAL
WHERE {_where(model, since_s, until_s)}
GROUP BY model, model_version, arm, bin
ORDER BY model, model_version, arm, bin"""


def shadow_agreement(db: str, model: str = "", since_s: float = 0.0, until_s: float = 0.0) -> str:
    return f"""
SELECT s.model AS model, p.model_version AS live_version, s.model_version AS shadow_version, count() AS n,
       avg(abs(s.score - p.score)) AS mean_abs_diff, quantile(0.99)(abs(s.score - p.score)) AS p99_abs_diff,
       avg(s.label = p.label) AS label_agreement
FROM (SELECT * FROM {db}.shadow_predictions FINAL WHERE {_where(model, since_s, until_s)}) AS s
INNER JOIN (SELECT * FROM {db}.predictions FINAL WHERE {_where(model, since_s, until_s)}) AS p
    ON s.request_id = p.request_id AND s.entity_id = p.entity_id AND s.model = p.model
GROUP BY model, live_version, shadow_version
ORDER BY model, live_version, shadow_version"""


def outcome_quality(db: str, model: str = "", since_s: float = 0.0, until_s: float = 0.0) -> str:
    return f"""
SELECT p.model AS model, p.model_version AS model_version, p.arm AS arm, count() AS outcomes,
       countIf(o.value >= 0.5) AS positives,
       if(positives > 0 AND positives < countIf(o.value IS NOT NULL),
          arrayAUC(groupArrayIf(p.score, o.value IS NOT NULL),
                   groupArrayIf(toUInt8(o.value >= 0.5), o.value IS NOT NULL)),
          NULL) AS auc,
       avgIf(p.label = o.label, o.label != '') AS accuracy,
       avg(p.score) AS mean_score, avgIf(o.value, o.value IS NOT NULL) AS outcome_rate
FROM (SELECT * FROM {db}.predictions FINAL WHERE {_where(model, since_s, until_s)}) AS p
INNER JOIN (SELECT * FROM {db}.outcomes FINAL {"WHERE model = " + quote(model) if model else ""}) AS o
    ON p.request_id = o.request_id AND p.model = o.model
GROUP BY model, model_version, arm
ORDER BY model, model_version, arm"""


def score_bins(db: str, model: str, edges: Sequence[float], since_s: float = 0.0, until_s: float = 0.0) -> str:
    """Scores counted in the bins of K+1 `edges` (a reference histogram's; the outer bins are
    open-ended, as in services.monitor.core.reference.bin_counts): bin i holds the scores with
    i inner edges at or below them."""
    inner = ", ".join(f"{float(e)!r}" for e in list(edges)[1:-1])
    return f"""
SELECT model, model_version, arm, arrayCount(e -> e <= score, [{inner}]::Array(Float64)) AS bin, count() AS n
FROM {db}.predictions FINAL
WHERE {_where(model, since_s, until_s)}
GROUP BY model, model_version, arm, bin
ORDER BY model, model_version, arm, bin"""


def rollout_decisions(db: str, model: str = "", since_s: float = 0.0, until_s: float = 0.0) -> str:
    """The rollout controller's decisions, oldest first (`ts_s`: unix seconds)."""
    return f"""
SELECT toUnixTimestamp64Milli(ts) / 1000 AS ts_s, model, stable_version, canary_version, step, weight,
       action, reason, evidence
FROM {db}.rollout_decisions
WHERE {_where(model, since_s, until_s)}
ORDER BY model, ts"""


def retrain_webhooks(db: str, model: str = "", since_s: float = 0.0, until_s: float = 0.0) -> str:
    """The drift monitor's retraining-webhook calls, oldest first (`ts_s`: when the call ended)."""
    return f"""
SELECT toUnixTimestamp64Milli(ts) / 1000 AS ts_s, toUnixTimestamp64Milli(detected) / 1000 AS detected_s,
       model, model_version, delivery_id, score_psi, max_feature_psi, psi_alert, drifted, attempts, status,
       http_status, error
FROM {db}.retrain_webhooks FINAL
WHERE {_where(model, since_s, until_s)}
ORDER BY model, ts"""


VIEWS = {
    "arm_stats": arm_stats,
    "score_distribution": score_distribution,
    "shadow_agreement": shadow_agreement,
    "outcome_quality": outcome_quality,
    "rollout_decisions": rollout_decisions,
    "retrain_webhooks": retrain_webhooks,
}
