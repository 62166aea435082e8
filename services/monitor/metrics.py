"""Prometheus metrics of the monitor (one registry per app, exposed by its GrpcServer at /metrics).

Besides the window gauges, every consumed prediction is counted and its logged latency observed
per model, version and arm (`predmesh_monitor_predictions_total{degraded}`,
`predmesh_monitor_prediction_latency_seconds`): the series the rollout controller's Prometheus
evidence source queries (services/sink/core/promql.py) for canary vs stable p99 latency and
error+degraded rate. Observed from the consumer thread (prometheus_client is thread-safe).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from predmesh.common.metrics import LATENCY_BUCKETS
from services.monitor.core.windows import Observation, WindowStats

_MV = ["model", "version"]


class MonitorMetrics:
    """Gauges set from each evaluation; series of versions that left the window are removed."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.consumed = Counter("predmesh_monitor_events_consumed", "Prediction events read from Kafka.", registry=r)
        self.undecodable = Counter(
            "predmesh_monitor_events_undecodable", "Records that were not a PredictionEvent.", registry=r
        )
        self.events = Gauge("predmesh_monitor_window_events", "Events in the sliding window.", _MV, registry=r)
        self.request_rate = Gauge(
            "predmesh_monitor_request_rate", "Predictions per second over the window.", _MV, registry=r
        )
        self.latency = Gauge(
            "predmesh_monitor_latency_ms",
            "Logged request latency quantiles over the window (milliseconds).",
            [*_MV, "quantile"],
            registry=r,
        )
        self.degraded = Gauge(
            "predmesh_monitor_degraded_ratio", "Fraction of predictions answered degraded.", _MV, registry=r
        )
        self.score_psi = Gauge(
            "predmesh_monitor_score_psi", "PSI of prediction scores against the version's reference.", _MV, registry=r
        )
        self.feature_psi = Gauge(
            "predmesh_monitor_feature_psi",
            "PSI of a numeric feature (sampled events) against the version's reference.",
            [*_MV, "feature"],
            registry=r,
        )
        self.drift = Gauge(
            "predmesh_monitor_drift",
            "1 when the score PSI or any feature PSI is above psi_alert.",
            _MV,
            registry=r,
        )
        self.retrain_webhooks = Counter(
            "predmesh_monitor_retrain_webhooks",
            "Retraining webhook calls after drift, by result (delivered | failed after retries or refused).",
            ["model", "result"],
            registry=r,
        )
        self.predictions = Counter(
            "predmesh_monitor_predictions",
            "Logged predictions, by model, version, arm and whether answered degraded (error+degraded).",
            ["model", "version", "arm", "degraded"],
            registry=r,
        )
        self.prediction_latency = Histogram(
            "predmesh_monitor_prediction_latency_seconds",
            "Logged request latency of predictions by model, version and arm (seconds).",
            ["model", "version", "arm"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._children: dict[tuple[str, str, str], tuple[Counter, Counter, Histogram]] = {}
        self._series: set[tuple[str, ...]] = set()

    def observe(self, obs: Observation) -> None:
        """Count one consumed prediction and observe its latency (label children bound once).

        An arm's degraded="true" and "false" series are created together: Prometheus' increase()
        cannot see a counter series' first scraped value, so a first degraded answer of an arm whose
        "true" series appeared only then would be missed; this way it is counted from 0."""
        key = (obs.model, obs.version, obs.arm)
        children = self._children.get(key)
        if children is None:
            children = (
                self.predictions.labels(*key, "false"),
                self.predictions.labels(*key, "true"),
                self.prediction_latency.labels(*key),
            )
            self._children[key] = children
        ok, degraded, latency = children
        (degraded if obs.degraded else ok).inc()
        latency.observe(obs.latency_ms / 1e3)

    def webhook_result(self, model: str, delivered: bool) -> None:
        self.retrain_webhooks.labels(model, "delivered" if delivered else "failed").inc()

    def update(self, stats: Sequence[WindowStats], psi_alert: float) -> None:
        self._clear()
        for st in stats:
            mv = (st.model, st.version)
            self._series.add(mv)
            self.events.labels(*mv).set(st.events)
            self.request_rate.labels(*mv).set(st.request_rate)
            for q, value in st.latency_ms.items():
                if not math.isnan(value):
                    self.latency.labels(*mv, str(q)).set(value)
            self.degraded.labels(*mv).set(st.degraded_rate)
            drifted = False
            if st.score_psi is not None:
                self.score_psi.labels(*mv).set(st.score_psi)
                drifted = st.score_psi > psi_alert
            for name, value in st.feature_psi.items():
                self.feature_psi.labels(*mv, name).set(value)
                drifted = drifted or value > psi_alert
            self.drift.labels(*mv).set(1 if drifted else 0)

    def _clear(self) -> None:
        for gauge in (
            self.events,
            self.request_rate,
            self.latency,
            self.degraded,
            self.score_psi,
            self.feature_psi,
            self.drift,
        ):
            gauge.clear()
        self._series.clear()
