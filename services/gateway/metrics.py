"""Prometheus metrics of the gateway, on a registry owned by one app instance."""

from __future__ import annotations

from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from predmesh.common.metrics import LATENCY_BUCKETS
from services.gateway.core.pace import Pace

BATCH_ROWS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
WINDOW_WAIT_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025)
DELTA_BUCKETS = (-0.5, -0.2, -0.1, -0.05, -0.01, 0.0, 0.01, 0.05, 0.1, 0.2, 0.5)
M = TypeVar("M", Counter, Histogram, Gauge)


class GatewayMetrics:
    """Counters and histograms the gateway core updates; thread-safe (prometheus_client)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._bound: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry
        self.predictions = Counter(
            "predmesh_gateway_predictions",
            "Entities scored, by model, serving version and arm.",
            ["model", "version", "arm"],
            registry=r,
        )
        self.latency = Histogram(
            "predmesh_gateway_request_latency_seconds",
            "Gateway request latency (seconds).",
            ["model", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_rows = Histogram(
            "predmesh_gateway_batch_rows",
            "Rows per coalesced upstream batch (features + inference), by model and path (primary, shadow).",
            ["model", "path"],
            buckets=BATCH_ROWS_BUCKETS,
            registry=r,
        )
        self.window_wait = Histogram(
            "predmesh_gateway_window_wait_seconds",
            "Time a request waited in the coalescing window before its batch was sent (seconds).",
            ["model", "path"],
            buckets=WINDOW_WAIT_BUCKETS,
            registry=r,
        )
        self.degraded = Counter(
            "predmesh_gateway_degraded",
            "Entities answered from the fallback chain, by reason.",
            ["model", "reason", "served_by"],
            registry=r,
        )
        self.defaulted = Counter(
            "predmesh_gateway_defaulted_features",
            "Feature values replaced by registered defaults.",
            ["model", "feature"],
            registry=r,
        )
        self.shadow_compared = Counter(
            "predmesh_gateway_shadow_compared",
            "Shadow predictions compared with the primary, by agreement.",
            ["model", "shadow_version", "agree"],
            registry=r,
        )
        self.shadow_delta = Histogram(
            "predmesh_gateway_shadow_score_delta",
            "Shadow score minus primary score.",
            ["model", "shadow_version"],
            buckets=DELTA_BUCKETS,
            registry=r,
        )
        self.shadow_dropped = Counter(
            "predmesh_gateway_shadow_dropped",
            "Shadow requests skipped because too many were in flight.",
            ["model"],
            registry=r,
        )
        self.shadow_errors = Counter(
            "predmesh_gateway_shadow_errors",
            "Shadow requests that failed.",
            ["model", "shadow_version"],
            registry=r,
        )
        self.cache_lookups = Counter(
            "predmesh_gateway_cache_lookups",
            "Prediction cache lookups of models with a cache policy, by level that answered (local, shared), "
            "miss, or late (the shared level did not answer within its share of the request's deadline).",
            ["model", "result"],
            registry=r,
        )
        self.log_dropped = Counter(
            "predmesh_gateway_log_dropped",
            "Prediction records the logger client could not queue.",
            registry=r,
        )
        self.routing_reloads = Counter(
            "predmesh_gateway_routing_reloads", "Routing table reloads, by result.", ["result"], registry=r
        )
        self.breaker_open = Gauge(
            "predmesh_gateway_breaker_open",
            "1 while a dependency's circuit breaker is open.",
            ["dependency"],
            registry=r,
        )
        self.async_dead_letters = Gauge(
            "predmesh_gateway_async_dead_letters",
            "Async predictions whose callback failed every attempt since start (dead letters): in-memory "
            "PredictAsync, plus results this replica sent to `async-dead-letters` (durable async).",
            registry=r,
        )

        self.async_events = Counter(
            "predmesh_gateway_async",
            "Durable async predictions, by event: accepted, scored, duplicate (a request id scored "
            "already), delivered, retried (a failed callback attempt rescheduled), dead_lettered.",
            ["event"],
            registry=r,
        )
        self.async_pending = Gauge(
            "predmesh_gateway_async_pending",
            "Async requests accepted and not yet answered (scored without callback, delivered or dead-lettered), "
            "cluster-wide (from the shared store).",
            registry=r,
        )
        self.async_oldest_pending = Gauge(
            "predmesh_gateway_async_oldest_pending_seconds",
            "Age of the oldest async request not yet answered (seconds; 0 when none).",
            registry=r,
        )
        self.lane_refused = Counter(
            "predmesh_gateway_lane_refused",
            "Requests refused with RESOURCE_EXHAUSTED by priority-lane admission, by lane.",
            ["lane"],
            registry=r,
        )
        self.batch_job_rows = Counter(
            "predmesh_gateway_batch_job_rows",
            "Rows of server-side batch jobs checkpointed by this replica, by result (scored, failed).",
            ["result"],
            registry=r,
        )

        self.pace_items = Gauge(
            "predmesh_gateway_background_pace_items",
            "Rows per batch-job call the adaptive background pace allows now (0: no pace).",
            registry=r,
        )
        self.pace_pause = Gauge(
            "predmesh_gateway_background_pace_pause_seconds",
            "Pause before each background (batch job, async) call the adaptive pace imposes now (seconds).",
            registry=r,
        )
        self.pace_overloaded = Gauge(
            "predmesh_gateway_background_overloaded",
            "1 while the pace is at its floor and real-time latency is still above tolerance (new batch and "
            "async requests are refused).",
            registry=r,
        )
        self.pace_decisions = Counter(
            "predmesh_gateway_background_pace_decisions",
            "Verdicts of the adaptive background pace, by kind: good (speed up), bad (back off), idle "
            "(no real-time traffic: speed up).",
            ["kind"],
            registry=r,
        )

    def watch_pace(self, pace: Pace) -> None:
        """Export the pace's state (gauges read on every scrape; verdicts counted as they happen)."""
        self.pace_items.set_function(lambda: pace.items)
        self.pace_pause.set_function(lambda: pace.pause_s)
        self.pace_overloaded.set_function(lambda: 1.0 if pace.overloaded else 0.0)
        pace.on_decision = lambda kind: self.pace_decisions.labels(kind).inc()

    def bound(self, metric: M, *labels: str) -> M:
        """`metric.labels(*labels)`, bound once per label set (a `.labels()` lookup on every batch
        costs more than the update itself). Label sets come from the routing table and fixed names."""
        key = (id(metric), labels)
        child = self._bound.get(key)
        if child is None:
            child = self._bound[key] = metric.labels(*labels)
        return child  # type: ignore[no-any-return]

    def batch_chunk_done(self, rows: int, failed: int) -> None:
        """One batch job chunk checkpointed by this replica: `rows` rows, `failed` of them with an error."""
        self.batch_job_rows.labels("scored").inc(rows - failed)
        self.batch_job_rows.labels("failed").inc(failed)

    def async_count(self, event: str) -> float:
        """Value of the async event counter (tests, reports)."""
        return self.registry.get_sample_value("predmesh_gateway_async_total", {"event": event}) or 0.0

    def agreement_rate(self, model: str, shadow_version: str) -> float | None:
        """Fraction of shadow comparisons that agreed with the primary (None before any)."""
        agree = (
            self.registry.get_sample_value(
                "predmesh_gateway_shadow_compared_total",
                {"model": model, "shadow_version": shadow_version, "agree": "true"},
            )
            or 0.0
        )
        disagree = (
            self.registry.get_sample_value(
                "predmesh_gateway_shadow_compared_total",
                {"model": model, "shadow_version": shadow_version, "agree": "false"},
            )
            or 0.0
        )
        total = agree + disagree
        return agree / total if total else None
