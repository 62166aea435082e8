"""gRPC server plumbing shared by every service.

- `ErrorInterceptor` is the single place where `PredmeshError` becomes a gRPC status.
- `GrpcServer` owns one grpc.aio server, its health service and graceful shutdown, plus
  observability for every service: tracing (`predmesh.common.telemetry`, set up from the
  settings' `otlp_endpoint`), RPC metrics on a per-server `CollectorRegistry` and the
  `/metrics` endpoint when `settings.metrics_port` is set (`predmesh.common.metrics`).
  Interceptor order, outermost first: tracing, metrics, the caller's, ErrorInterceptor.
  The tracing interceptor is installed only when tracing is on when the server is built
  (each interceptor costs every RPC a coroutine even when it does nothing); the others
  wrap each method's handler once and reuse it.

Lifecycle: construct, `add_servicer(...)` for each service, `await start()`, then
`await stop()` which flips health to NOT_SERVING before `server.stop(grace)`.
Everything runs on the caller's event loop; nothing here is thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from prometheus_client import CollectorRegistry

from predmesh.common import telemetry
from predmesh.common.errors import ErrorCode, PredmeshError
from predmesh.common.grpcclient import MAX_MESSAGE_BYTES
from predmesh.common.handlers import HandlerCache, rewrap
from predmesh.common.metrics import MetricsEndpoint, MetricsServerInterceptor, RpcMetrics
from predmesh.common.settings import ServerSettings
from predmesh.common.tls import IdentityInterceptor, TlsFiles, server_credentials

log = logging.getLogger(__name__)

STATUS_FOR: dict[ErrorCode, grpc.StatusCode] = {code: getattr(grpc.StatusCode, code.value) for code in ErrorCode}
INTERNAL_MESSAGE = "internal error"


class _StatusForErrors:
    """Around one RPC: a PredmeshError aborts with its status, anything else with INTERNAL.

    A plain class (not @asynccontextmanager): entered on every RPC, so no generator per call.
    """

    __slots__ = ("_context", "_method")

    def __init__(self, method: str, _streaming: bool, context: grpc.aio.ServicerContext) -> None:
        self._method = method
        self._context = context

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, _type: type[BaseException] | None, err: BaseException | None, _tb: Any) -> bool:
        if err is None or not isinstance(err, Exception) or isinstance(err, grpc.aio.AbortError):
            return False  # success, cancellation, or an abort the handler chose itself
        if isinstance(err, PredmeshError):
            await self._context.abort(STATUS_FOR[err.code], err.message)
        log.error("unhandled error in %s", self._method, exc_info=err)
        await self._context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
        return False  # not reached: abort raises


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps PredmeshError to its gRPC status and anything unexpected to INTERNAL (generic message).

    Innermost interceptor; wraps every handler kind through `handlers.rewrap` like the others,
    once per method (`HandlerCache`), not on every RPC.
    """

    def __init__(self) -> None:
        self._cache = HandlerCache(lambda handler, method: rewrap(handler, method, _StatusForErrors))

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return self._cache.get(handler, handler_call_details.method)


# Keepalive agreement with `grpcclient.CHANNEL_OPTIONS` (clients ping every 30 s on open streams, even
# idle ones): the server accepts a ping every 10 s with or without data, so it never answers our own
# clients with GOAWAY `too_many_pings` (gRPC's server default only tolerates one every 5 minutes).
SERVER_KEEPALIVE_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 2),
]


class GrpcServer:
    """One grpc.aio server with tracing, RPC metrics, the error interceptor and a health service.

    With the settings' tls_* files (and `server_tls`), it serves mutual TLS and authorises each
    RPC by the caller's certificate identity (`allowed_clients`, predmesh.common.tls).

    `registry` is where the RPC metrics go and what `/metrics` exposes: pass the service's
    own registry to serve its metrics on the same endpoint (default: a new one, `.registry`).
    """

    def __init__(
        self,
        settings: ServerSettings,
        interceptors: list[grpc.aio.ServerInterceptor] | None = None,
        options: list[tuple[str, Any]] | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._settings = settings
        tracing = telemetry.configure_tracing(settings)
        self.registry = registry if registry is not None else CollectorRegistry()
        self.rpc_metrics = RpcMetrics(self.registry)
        self._metrics_endpoint: MetricsEndpoint | None = None
        self.metrics_port: int = 0
        files = TlsFiles.from_settings(settings.tls_cert_path, settings.tls_key_path, settings.tls_ca_path)
        self.tls: TlsFiles | None = files if settings.server_tls else None
        identity = [IdentityInterceptor(settings.allowed_clients)] if self.tls and settings.allowed_clients else []
        self._server = grpc.aio.server(
            interceptors=[
                *([telemetry.TracingServerInterceptor()] if tracing else []),
                MetricsServerInterceptor(self.rpc_metrics),
                *identity,
                *(interceptors or []),
                ErrorInterceptor(),
            ],
            # Explicit limits equal to the clients' (grpcclient.CHANNEL_OPTIONS) and a keepalive policy that
            # accepts their pings; `options` may override.
            options=list(
                {
                    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
                    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
                    **dict(SERVER_KEEPALIVE_OPTIONS),
                    **dict(options or []),
                }.items()
            ),
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        )
        self._health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self._health_server: grpc.aio.Server | None = None
        self.health_port: int = 0
        if settings.health_port is not None:  # plaintext, health only: for probes that cannot do mTLS
            self._health_server = grpc.aio.server()
            health_pb2_grpc.add_HealthServicer_to_server(self._health, self._health_server)
        self._service_names: list[str] = []
        self.port: int = 0

    def add_servicer(self, register: Callable[[Any, grpc.aio.Server], None], servicer: Any, name: str) -> None:
        """Register `servicer` with its generated `add_XServicer_to_server` function."""
        register(servicer, self._server)
        self._service_names.append(name)

    def enable_reflection(self) -> None:
        """Serve gRPC server reflection (grpc.reflection.v1alpha) for every service added so far plus health
        and reflection itself, so grpcurl, grpcui, Postman or Evans discover the API without .proto files.
        Call after the last `add_servicer`."""
        from grpc_reflection.v1alpha import reflection

        names = [*self._service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
        reflection.enable_server_reflection([*names, reflection.SERVICE_NAME], self._server)

    @property
    def address(self) -> str:
        return f"{self._settings.host}:{self.port}"

    async def start(self) -> int:
        bind = f"{self._settings.host}:{self._settings.port}"
        if self.tls is not None:
            creds = await asyncio.to_thread(server_credentials, self.tls, self._settings.tls_poll_s)
            self.port = self._server.add_secure_port(bind, creds)
        else:
            self.port = self._server.add_insecure_port(bind)
        if self.port == 0:
            raise RuntimeError(f"could not bind {self._settings.host}:{self._settings.port}")
        await self._server.start()
        if self._health_server is not None:
            probe_bind = f"{self._settings.host}:{self._settings.health_port}"
            self.health_port = self._health_server.add_insecure_port(probe_bind)
            await self._health_server.start()
        if self._settings.metrics_port is not None:
            endpoint = MetricsEndpoint(
                self.registry, self._settings.metrics_host or self._settings.host, self._settings.metrics_port
            )
            self.metrics_port = await asyncio.to_thread(endpoint.start)
            self._metrics_endpoint = endpoint
        for name in ["", *self._service_names]:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return self.port

    async def set_serving(self, serving: bool) -> None:
        """Report every service of this server SERVING or NOT_SERVING (e.g. a dependency that cannot recover)."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ["", *self._service_names]:
            await self._health.set(name, status)

    async def stop(self, grace_s: float | None = None) -> None:
        """Flip health to NOT_SERVING, keep serving for `drain_delay_s` (load balancers notice and stop
        routing here), then stop accepting and let in-flight RPCs finish within the grace period."""
        await self._health.enter_graceful_shutdown()
        if self._settings.drain_delay_s > 0:
            await asyncio.sleep(self._settings.drain_delay_s)
        await self._server.stop(self._settings.grace_s if grace_s is None else grace_s)
        if self._health_server is not None:
            await self._health_server.stop(0)
        if self._metrics_endpoint is not None:
            await asyncio.to_thread(self._metrics_endpoint.stop)
            self._metrics_endpoint = None
        if telemetry.tracing_enabled():
            await asyncio.to_thread(telemetry.force_flush)

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()
