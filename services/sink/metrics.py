"""Prometheus metrics of the sink (one registry per app, exposed by its GrpcServer at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from services.sink.core.decide import Decision

STATE_CODES = {"running": 0, "paused": 1, "promoted": 2, "rolled_back": 3, "aborted": 4}


class SinkMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.rows = Gauge("predmesh_sink_rows_inserted", "Rows inserted into the analytics store (total).", registry=r)
        self.consumed = Gauge("predmesh_sink_records_consumed", "Kafka records consumed (total).", registry=r)
        self.insert_failures = Gauge(
            "predmesh_sink_insert_failures", "Failed insert attempts (retried; total).", registry=r
        )
        self.decisions = Counter(
            "predmesh_rollout_decisions", "Rollout controller decisions.", ["model", "action"], registry=r
        )
        self.weight = Gauge(
            "predmesh_rollout_canary_weight", "Canary weight after the last decision (%).", ["model"], registry=r
        )
        self.state = Gauge(
            "predmesh_rollout_state",
            "Rollout state after the last decision: 0 running, 1 paused, 2 promoted, 3 rolled_back, 4 aborted.",
            ["model"],
            registry=r,
        )

        self.evidence_errors = Counter(
            "predmesh_rollout_evidence_unavailable",
            "Rollout evaluations skipped (no decision) because the evidence source could not answer.",
            ["model", "source"],
            registry=r,
        )

    def evidence_error(self, model: str, source: str) -> None:
        self.evidence_errors.labels(model, source).inc()

    def decision(self, model: str, decision: Decision) -> None:
        self.decisions.labels(model, decision.action).inc()
        canary = decision.spec.canary
        weight = (
            next((w for v, w in decision.weights if v == canary), 0.0) if decision.weights else decision.spec.weight
        )
        self.weight.labels(model).set(weight)
        self.state.labels(model).set(STATE_CODES[decision.spec.state])
