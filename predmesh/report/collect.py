"""Gather a model's report from the analytics store's views and the drift monitor.

`collect(query, model, ...)`: `query(sql)` runs one read-only statement and returns rows as
dicts (the CLI passes AnalyticsService.Query; tests may pass a store directly). The SQL is
the sink's views (services/sink/core/views.py), the same the rollout controller reads.

Drift, from what is available (each row says its source, the report's notes say what was missing):
- "store": PSI of the scores in the store per version against the version's `reference.json`
  (score bins counted by the `score_bins` view, PSI by services.monitor.core.reference.psi);
  the prediction log keeps no feature values, so features cannot be computed from the store;
- "monitor": score and per-feature PSI from the drift monitor's Prometheus `/metrics` text
  (its sliding window; features only when the gateway samples feature values into events).
Blocking; no gRPC imports.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from predmesh.report.data import SCORE_BINS, ArmRow, DecisionRow, DriftRow, ReportData, ScoreSeries, WebhookRow
from services.monitor.core.reference import Reference, psi
from services.sink.core import views

Query = Callable[[str], list[dict[str, Any]]]
ReferenceLookup = Callable[[str, str], Reference | None]


def _f(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return 0.0
    return out if math.isfinite(out) else 0.0


def arm_rows(query: Query, db: str, model: str, since_s: float) -> list[ArmRow]:
    quality = {(r["model_version"], r["arm"]): r for r in query(views.outcome_quality(db, model, since_s))}
    out = []
    for r in query(views.arm_stats(db, model, since_s)):
        q = quality.get((r["model_version"], r["arm"]), {})
        auc = q.get("auc")
        out.append(
            ArmRow(
                version=str(r["model_version"]),
                arm=str(r["arm"]),
                n=int(r["n"]),
                rate_per_s=_f(r["rate_per_s"]),
                p50_ms=_f(r["p50_ms"]),
                p99_ms=_f(r["p99_ms"]),
                bad_rate=_f(r["bad_rate"]),
                mean_score=_f(r["mean_score"]),
                outcomes=int(q.get("outcomes") or 0),
                auc=None if auc is None else _f(auc),
            )
        )
    return out


def score_series(query: Query, db: str, model: str, since_s: float) -> list[ScoreSeries]:
    counts: dict[tuple[str, str], list[int]] = {}
    for r in query(views.score_distribution(db, model, since_s)):
        bins = counts.setdefault((str(r["model_version"]), str(r["arm"])), [0] * SCORE_BINS)
        index = min(SCORE_BINS - 1, max(0, round(_f(r["bin"]) * SCORE_BINS)))
        bins[index] += int(r["n"])
    return [ScoreSeries(v, a, tuple(c)) for (v, a), c in sorted(counts.items())]


def store_drift(
    query: Query, db: str, model: str, since_s: float, versions: list[str], references: ReferenceLookup
) -> tuple[list[DriftRow], list[str]]:
    """Score PSI per version from the store's predictions (all arms) against reference.json."""
    rows: list[DriftRow] = []
    missing: list[str] = []
    for version in versions:
        reference = references(model, version)
        if reference is None:
            missing.append(version)
            continue
        hist = reference.score
        counts = [0] * len(hist.fractions)
        for r in query(views.score_bins(db, model, hist.edges, since_s)):
            if str(r["model_version"]) == version:
                counts[int(r["bin"])] += int(r["n"])
        rows.append(DriftRow(version, "score", psi(hist.fractions, counts), "store"))
    return rows, missing


def monitor_drift(metrics_text: str, model: str) -> list[DriftRow]:
    """Score and feature PSI gauges of `model` from the monitor's Prometheus text exposition."""
    rows: list[DriftRow] = []
    for family in text_string_to_metric_families(metrics_text):
        if family.name not in ("predmesh_monitor_score_psi", "predmesh_monitor_feature_psi"):
            continue
        for sample in family.samples:
            labels = sample.labels
            if labels.get("model") != model:
                continue
            name = labels.get("feature", "score")
            rows.append(DriftRow(labels.get("version", ""), name, float(sample.value), "monitor"))
    return sorted(rows, key=lambda d: (d.version, d.name != "score", d.name))


def decision_rows(query: Query, db: str, model: str, since_s: float) -> list[DecisionRow]:
    out = []
    for r in query(views.rollout_decisions(db, model, since_s)):
        try:
            evidence = json.loads(r.get("evidence") or "{}")
        except ValueError:
            evidence = {}
        action = str(r["action"])
        weight = _f(r["weight"])
        after = evidence.get("canary_weight_after")
        out.append(
            DecisionRow(
                ts_s=_f(r["ts_s"]),
                stable_version=str(r["stable_version"]),
                canary_version=str(r["canary_version"]),
                step=int(r["step"]),
                weight=weight,
                action=action,
                reason=str(r["reason"]),
                weight_after=_f(after) if after is not None else (0.0 if action == "rollback" else weight),
                evidence=evidence if isinstance(evidence, dict) else {},
            )
        )
    return out


def _opt(value: Any) -> float | None:
    return None if value is None else _f(value)


def webhook_rows(query: Query, db: str, model: str, since_s: float) -> list[WebhookRow]:
    return [
        WebhookRow(
            ts_s=_f(r["ts_s"]),
            version=str(r["model_version"]),
            score_psi=_opt(r["score_psi"]),
            max_feature_psi=_opt(r["max_feature_psi"]),
            drifted=str(r["drifted"]),
            attempts=int(r["attempts"]),
            status=str(r["status"]),
            http_status=int(r["http_status"]),
            error=str(r["error"]),
        )
        for r in query(views.retrain_webhooks(db, model, since_s))
    ]


def collect(
    query: Query,
    model: str,
    *,
    database: str = "predmesh",
    since_s: float = 0.0,
    references: ReferenceLookup | None = None,
    monitor_metrics: str | None = None,
    psi_alert: float = 0.25,
    now_s: float | None = None,
) -> ReportData:
    data = ReportData(model=model, generated_s=time.time() if now_s is None else now_s, since_s=since_s)
    data.psi_alert = psi_alert
    data.arms = arm_rows(query, database, model, since_s)
    data.scores = score_series(query, database, model, since_s)
    data.decisions = decision_rows(query, database, model, since_s)
    data.webhooks = webhook_rows(query, database, model, since_s)
    versions = sorted({a.version for a in data.arms})
    if references is not None:
        rows, missing = store_drift(query, database, model, since_s, versions, references)
        data.drift.extend(rows)
        if rows:
            data.notes.append("Score drift (source store): the store's predictions vs each version's reference.json.")
        if missing:
            data.notes.append(
                "No reference.json for version(s) " + ", ".join(missing) + ": no score PSI from the store."
            )
    else:
        data.notes.append("No model repository given: no score PSI from the store.")
    if monitor_metrics is not None:
        rows = monitor_drift(monitor_metrics, model)
        data.drift.extend(rows)
        data.notes.append(
            f"Drift (source monitor): {len(rows)} PSI gauge(s) from the drift monitor's /metrics (its sliding window)."
        )
    else:
        data.notes.append(
            "Drift monitor not reachable: no feature PSI (the prediction log keeps no feature values, "
            "so the store cannot provide it)."
        )
    if not data.arms:
        data.notes.append(f"No predictions of model {model!r} in the store.")
    return data
