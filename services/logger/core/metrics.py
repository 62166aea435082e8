"""Prometheus metrics of one logger instance, in its own registry.

A registry per `LoggerMetrics` keeps several loggers in one process (tests) apart.
prometheus_client metrics are thread-safe: the writer and delivery threads update them.
`serve()` starts the HTTP exposition endpoint in a daemon thread; `close()` stops it.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

log = logging.getLogger(__name__)

_NS = "predmesh_logger"


class LoggerMetrics:
    """Counters and gauges of the logger; read them with `value(name)` or over HTTP."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.accepted = Counter(
            "events_accepted", "Events journaled and acknowledged to callers.", namespace=_NS, registry=r
        )
        self.produced = Counter(
            "events_produced", "Events whose Kafka delivery was confirmed.", namespace=_NS, registry=r
        )
        self.spilled = Counter(
            "events_spilled",
            "Events journaled while Kafka was unavailable (sent later).",
            namespace=_NS,
            registry=r,
        )
        self.replayed = Counter(
            "events_replayed",
            "Events produced again from the journal after a failure or a restart.",
            namespace=_NS,
            registry=r,
        )
        self.dropped = Counter(
            "events_dropped",
            "Acked events that will never reach Kafka (permanent errors; kept in the dead-letter file).",
            ["reason"],
            namespace=_NS,
            registry=r,
        )
        self.rejected = Counter(
            "events_rejected",
            "Events refused before journaling (malformed or journal full).",
            ["reason"],
            namespace=_NS,
            registry=r,
        )
        self.delivery_errors = Counter(
            "delivery_errors",
            "Failed Kafka deliveries (the event is retried from the journal).",
            ["code"],
            namespace=_NS,
            registry=r,
        )
        self.producer_restarts = Counter(
            "producer_restarts",
            "Kafka producers recreated after a broker outage or fatal error.",
            namespace=_NS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "producer_queue_depth",
            "Events handed to the producer and not yet confirmed.",
            namespace=_NS,
            registry=r,
        )
        self.backlog = Gauge(
            "journal_backlog_events",
            "Journaled events not yet confirmed by Kafka.",
            namespace=_NS,
            registry=r,
        )
        self.journal_full = Gauge(
            "journal_full",
            "1 while the journal holds journal_max_bytes of unsent events and refuses new ones (alert on it).",
            namespace=_NS,
            registry=r,
        )
        self.kafka_up = Gauge("kafka_up", "1 while deliveries succeed, 0 while spilling.", namespace=_NS, registry=r)
        self._server: Any = None
        self.port: int | None = None

    def value(self, name: str, **labels: str) -> float:
        """Current value of a sample by full name, e.g. `predmesh_logger_events_produced_total`."""
        got = self.registry.get_sample_value(name, labels or None)
        return float(got) if got is not None else 0.0

    def serve(self, host: str, port: int) -> int:
        """Start the /metrics HTTP endpoint; returns the bound port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        self.port = int(server.server_address[1])
        log.info("metrics on http://%s:%d/metrics", host, self.port)
        return self.port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
