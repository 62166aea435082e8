"""Prometheus metrics shared by every service: RPC metrics interceptor, /metrics endpoint, buckets.

Each `GrpcServer` owns (or is handed) one `CollectorRegistry`, so several servers in one
process (tests) never collide; the service's own metrics register on the same registry
and one `/metrics` endpoint (`MetricsEndpoint`, started by `GrpcServer` when
`settings.metrics_port` is set) exposes them all.

RPC metrics (labels `grpc_service`, `grpc_method`, plus `grpc_code` on the handled count):
`predmesh_grpc_server_started_total`, `predmesh_grpc_server_handled_total`,
`predmesh_grpc_server_handling_seconds` (histogram), `predmesh_grpc_server_in_flight`.

`LATENCY_BUCKETS` is the one set of latency histogram buckets (seconds) every service uses,
so latencies of different hops can be compared and summed bucket by bucket.
prometheus_client objects are thread-safe.
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from predmesh.common.handlers import rewrap, split_method, status_of

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class RpcMetrics:
    """Per-RPC counters and latency of one gRPC server, on `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["grpc_service", "grpc_method"]
        self.started = Counter("predmesh_grpc_server_started", "RPCs started on the server.", labels, registry=registry)
        self.handled = Counter(
            "predmesh_grpc_server_handled",
            "RPCs completed on the server, by gRPC status code.",
            [*labels, "grpc_code"],
            registry=registry,
        )
        self.latency = Histogram(
            "predmesh_grpc_server_handling_seconds",
            "Time from the RPC's start to its status, seconds (streams: the whole stream).",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge("predmesh_grpc_server_in_flight", "RPCs being handled now.", labels, registry=registry)


class MetricsServerInterceptor(grpc.aio.ServerInterceptor):
    """Counts every RPC by method and status code and observes its latency (outermost interceptor)."""

    def __init__(self, metrics: RpcMetrics) -> None:
        self._m = metrics

    async def intercept_service(self, continuation: Any, handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return rewrap(handler, handler_call_details.method, self._around)

    @asynccontextmanager
    async def _around(self, method: str, _streaming: bool, context: grpc.aio.ServicerContext) -> Any:
        service, name = split_method(method)
        m = self._m
        m.started.labels(service, name).inc()
        gauge = m.in_flight.labels(service, name)
        gauge.inc()
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            yield
        except BaseException as err:
            error = err
            raise
        finally:
            gauge.dec()
            m.latency.labels(service, name).observe(time.perf_counter() - started)
            m.handled.labels(service, name, status_of(context, error).name).inc()


class MetricsEndpoint:
    """The Prometheus `/metrics` HTTP endpoint of one registry (a daemon thread).

    `start()` binds (port 0 = ephemeral) and returns the bound port; `stop()` closes it.
    """

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self._registry = registry
        self._host = host
        self._port = port
        self._server: Any = None
        self.port = 0

    def start(self) -> int:
        server, _thread = start_http_server(self._port, addr=self._host, registry=self._registry)
        self._server = server
        self.port = int(server.server_address[1])
        log.info("metrics on http://%s:%d/metrics", self._host, self.port)
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
