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
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from predmesh.common.handlers import Behaviour, HandlerCache, rewrap, split_method, status_of

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class ExitCallbacks(Protocol):
    """What `expose_*` need of an exit stack (contextlib.ExitStack or AsyncExitStack)."""

    def callback(self, callback: Callable[..., Any], /, *args: Any, **kwds: Any) -> Any: ...


class ReadAtScrape(Collector):
    """A counter or gauge whose value is read when scraped: for a count or size kept as a plain
    number by a transport object that knows nothing of metrics (e.g. the Redis Cluster fast paths'
    `fallbacks`, the monitor's webhook-record backlog)."""

    def __init__(self, name: str, documentation: str, read: Callable[[], float], counter: bool) -> None:
        self._name, self._documentation, self._read, self._counter = name, documentation, read, counter

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        family = CounterMetricFamily if self._counter else GaugeMetricFamily
        yield family(self._name, self._documentation, value=float(self._read()))


def expose_count(
    stack: ExitCallbacks, registry: CollectorRegistry, name: str, documentation: str, read: Callable[[], float]
) -> None:
    """A counter read at scrape time (`name` without `_total`; it is added), unregistered when
    `stack` closes (an app's exit stack: a restarted app exposes it again)."""
    _expose(stack, registry, ReadAtScrape(name, documentation, read, counter=True))


def expose_gauge(
    stack: ExitCallbacks, registry: CollectorRegistry, name: str, documentation: str, read: Callable[[], float]
) -> None:
    """A gauge read at scrape time, unregistered when `stack` closes (as `expose_count`)."""
    _expose(stack, registry, ReadAtScrape(name, documentation, read, counter=False))


def _expose(stack: ExitCallbacks, registry: CollectorRegistry, collector: ReadAtScrape) -> None:
    registry.register(collector)
    stack.callback(registry.unregister, collector)


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


class MethodMetrics:
    """The label children of one method, bound once (a `.labels()` lookup per call costs more
    than the increment itself). `handled(code)` binds each status code on first use."""

    __slots__ = ("_by_code", "_handled", "_labels", "in_flight", "latency", "started")

    def __init__(self, metrics: RpcMetrics, method: str) -> None:
        service, name = split_method(method)
        self._labels = (service, name)
        self._handled = metrics.handled
        self.started = metrics.started.labels(service, name)
        self.in_flight = metrics.in_flight.labels(service, name)
        self.latency = metrics.latency.labels(service, name)
        self._by_code: dict[grpc.StatusCode, Any] = {grpc.StatusCode.OK: metrics.handled.labels(service, name, "OK")}

    def handled(self, code: grpc.StatusCode) -> Any:
        child = self._by_code.get(code)
        if child is None:
            child = self._by_code[code] = self._handled.labels(*self._labels, code.name)
        return child


class MetricsServerInterceptor(grpc.aio.ServerInterceptor):
    """Counts every RPC by method and status code and observes its latency.

    The wrapped handler and the label children are built once per method (`HandlerCache`,
    `MethodMetrics`); a unary call then pays two increments, a gauge dec and one observe.
    """

    def __init__(self, metrics: RpcMetrics) -> None:
        self._m = metrics
        self._per_method: dict[str, MethodMetrics] = {}
        self._cache = HandlerCache(self._wrap)

    async def intercept_service(self, continuation: Any, handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return self._cache.get(handler, handler_call_details.method)

    def _method(self, method: str) -> MethodMetrics:
        mm = self._per_method.get(method)
        if mm is None:
            mm = self._per_method[method] = MethodMetrics(self._m, method)
        return mm

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        return rewrap(handler, method, self._around, unary=self._unary)

    def _unary(self, inner: Behaviour, method: str, _streaming: bool) -> Behaviour:
        mm = self._method(method)
        started, in_flight, latency, handled = mm.started, mm.in_flight, mm.latency, mm.handled
        clock = time.perf_counter

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started.inc()
            in_flight.inc()
            t0 = clock()
            error: BaseException | None = None
            try:
                return await inner(request, context)
            except BaseException as err:
                error = err
                raise
            finally:
                in_flight.dec()
                latency.observe(clock() - t0)
                handled(status_of(context, error)).inc()

        return call

    @asynccontextmanager
    async def _around(self, method: str, _streaming: bool, context: grpc.aio.ServicerContext) -> Any:
        mm = self._method(method)
        mm.started.inc()
        mm.in_flight.inc()
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            yield
        except BaseException as err:
            error = err
            raise
        finally:
            mm.in_flight.dec()
            mm.latency.observe(time.perf_counter() - started)
            mm.handled(status_of(context, error)).inc()


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
