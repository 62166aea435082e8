"""Prometheus metrics of the ingestion service (one registry per app, exposed by its GrpcServer at /metrics).

Updated from the consumer thread (prometheus_client is thread-safe). Events per second is
`rate(predmesh_ingest_events_total[1m])`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Event time -> Redis write: milliseconds (live stream) to minutes (catch-up after downtime).
LAG_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, float("inf"))


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "predmesh_ingest_events",
            "Feature events processed, by outcome: written, ignored_older (a newer or equal event time was"
            " stored: out-of-order or replayed), rejected (sent to the dead-letter topic).",
            ["outcome"],
            registry=r,
        )
        self.rejected = Counter(
            "predmesh_ingest_rejected",
            "Feature events rejected by the quality gates, by reason.",
            ["reason"],
            registry=r,
        )
        self.warnings = Counter(
            "predmesh_ingest_distribution_warnings",
            "Values outside the registry's distribution reference (written anyway), by feature and check.",
            ["entity_type", "feature", "check"],
            registry=r,
        )
        self.lag = Histogram(
            "predmesh_ingest_event_to_write_seconds",
            "Event time to the Redis write of the event (seconds; includes producer and broker time).",
            buckets=LAG_BUCKETS_S,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "predmesh_ingest_consumer_lag",
            "Records not yet consumed per partition (high watermark minus position; refreshed periodically).",
            ["partition"],
            registry=r,
        )
        self.redis_errors = Counter(
            "predmesh_ingest_redis_errors", "Failed Redis batch writes (each is retried).", registry=r
        )
        self.dlq_errors = Counter(
            "predmesh_ingest_dlq_errors", "Dead-letter produce failures (the batch is retried).", registry=r
        )
