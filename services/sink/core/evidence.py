"""Where the rollout controller's evidence comes from: the analytics store, or Prometheus.

`EvidenceSource.evidence(model, stable, spec, now_s)` returns the stable and canary arms'
`Evidence` over the current step (since `spec.step_started_s`); every value names its source in
`ArmEvidence.sources` (recorded with each decision). It raises EvidenceUnavailable when the source
cannot answer: the controller then makes no decision for that rollout on this pass.

- `AnalyticsEvidence(store)` (the default; locally the only one): `arm_stats` (n, p99,
  error+degraded rate) and `outcome_quality` (outcomes, AUC) from the store (services/sink/core/views.py).
- `PrometheusEvidence(query, analytics, selector)`: n, p99 latency and error+degraded rate from
  a Prometheus-compatible API (two PromQL queries per model, services/sink/core/promql.py, over
  the drift monitor's per-arm counters and latency histogram), and outcomes / AUC from the
  analytics store (Prometheus has no outcomes). An arm Prometheus has no series or no p99 for
  has n 0 / p99 None: insufficient evidence, so `decide` holds.

Blocking I/O (store queries, HTTP): called from the controller's worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from predmesh.common.rollout import RolloutSpec
from services.sink.core import promql, views
from services.sink.core.decide import ArmEvidence, Evidence
from services.sink.core.store import AnalyticsStore

ANALYTICS = "analytics"
PROMETHEUS = "prometheus"
Rows = dict[tuple[str, str], dict[str, Any]]
Query = Callable[[str, float], list[promql.Sample]]


class EvidenceSource(Protocol):
    name: str

    def evidence(self, model: str, stable: str, spec: RolloutSpec, now_s: float) -> Evidence: ...


class AnalyticsEvidence:
    name = ANALYTICS

    def __init__(self, store: AnalyticsStore) -> None:
        self._store = store

    def _rows(self, sql: str) -> Rows:
        return {(r["model_version"], r["arm"]): r for r in self._store.query(sql).dicts()}

    def quality(self, model: str, since_s: float) -> Rows:
        """`outcome_quality` rows (outcomes, AUC) since `since_s`, by (version, arm)."""
        return self._rows(views.outcome_quality(self._store.database, model, since_s))

    def evidence(self, model: str, stable: str, spec: RolloutSpec, now_s: float) -> Evidence:
        stats = self._rows(views.arm_stats(self._store.database, model, spec.step_started_s))
        quality = self.quality(model, spec.step_started_s)
        return Evidence(
            stable=_analytics_arm(stats, quality, (stable, "stable")),
            canary=_analytics_arm(stats, quality, (spec.canary, "canary")),
        )


def _auc(q: dict[str, Any]) -> float | None:
    auc = q.get("auc")
    return None if auc is None else float(auc)


def _analytics_arm(stats: Rows, quality: Rows, key: tuple[str, str]) -> ArmEvidence:
    s, q = stats.get(key, {}), quality.get(key, {})
    return ArmEvidence(
        n=int(s.get("n") or 0),
        p99_ms=float(s.get("p99_ms") or 0.0),
        bad_rate=float(s.get("bad_rate") or 0.0),
        outcomes=int(q.get("outcomes") or 0),
        auc=_auc(q),
        sources=dict.fromkeys(("n", "p99_ms", "bad_rate", "outcomes", "auc"), ANALYTICS),
    )


class PrometheusEvidence:
    name = PROMETHEUS

    def __init__(self, query: Query, analytics: AnalyticsEvidence, selector: str = "") -> None:
        self._query = query
        self._analytics = analytics
        self._selector = promql.check_selector(selector)

    def evidence(self, model: str, stable: str, spec: RolloutSpec, now_s: float) -> Evidence:
        window_s = now_s - spec.step_started_s
        counts = self._query(promql.counts_query(model, window_s, self._selector), now_s)
        p99s = self._query(promql.p99_query(model, window_s, self._selector), now_s)
        quality = self._analytics.quality(model, spec.step_started_s)

        def arm(version: str, name: str) -> ArmEvidence:
            n, p99_ms, bad_rate = promql.arm_values(counts, p99s, version, name)
            q = quality.get((version, name), {})
            return ArmEvidence(
                n=n,
                p99_ms=p99_ms,
                bad_rate=bad_rate,
                outcomes=int(q.get("outcomes") or 0),
                auc=_auc(q),
                sources={
                    "n": PROMETHEUS,
                    "p99_ms": PROMETHEUS,
                    "bad_rate": PROMETHEUS,
                    "outcomes": ANALYTICS,
                    "auc": ANALYTICS,
                },
            )

        return Evidence(stable=arm(stable, "stable"), canary=arm(spec.canary, "canary"))
