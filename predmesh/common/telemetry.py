"""OpenTelemetry tracing for every predmesh service: setup, gRPC propagation, Kafka headers, batches.

Trace context travels as W3C `traceparent` (+ `tracestate`) in gRPC metadata and in
Kafka record headers, so one request is one trace: Envoy -> gateway -> features ->
orchestrator -> backend, plus the logger's journal span.

- `configure_tracing(settings)`: installs the process-wide SDK tracer provider with an
  OTLP/gRPC exporter when `settings.otlp_endpoint` is set (parent-based ratio sampling,
  `service.name` from settings or the env prefix). Idempotent; called by `GrpcServer`,
  so every service gets it with no per-service code. Without an endpoint nothing is
  installed and every helper here is a no-op (interceptors return the handler as is).
- `TracingServerInterceptor` (installed by `GrpcServer` while tracing is on): extracts the caller's context
  from metadata and runs each RPC in a SERVER span named `pkg.Service/Method` with
  `rpc.grpc.status_code`. Client/bidi-streaming RPCs (the logger's Publish, xDS) get a
  span only when the caller sent a trace context: long-lived streams are not requests.
  An unsampled caller context is attached without a span (and client calls under it carry
  it on without a CLIENT span), so unsampled requests cost a contextvar, not a span.
- `client_interceptors()` (installed by `predmesh.common.grpcclient.insecure_channel`):
  a CLIENT span around every unary call with the context injected into its metadata;
  streaming calls only carry the current context.
- `inject_headers` / `extract_headers`: Kafka header carriers.
- `enqueue_trace` / `batch_span`: queue-wait spans and one batch span LINKED to every
  request of a micro-batch (see its docstring for the batcher's calling pattern).

Threading: the OpenTelemetry API is thread-safe; spans follow `contextvars`, so asyncio
tasks inherit the context current when they were created.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from predmesh.common.handlers import Behaviour, HandlerCache, rewrap, split_method, status_of
from predmesh.common.settings import ServerSettings

log = logging.getLogger(__name__)

TRACER_NAME = "predmesh"
HEALTH_SERVICE = "grpc.health.v1.Health"
_HEALTH_PREFIX = f"/{HEALTH_SERVICE}/"
_TRACE_KEYS = ("traceparent", "tracestate")

_configured: Any = None  # the SDK TracerProvider this process installed (or None)


# -- setup --------------------------------------------------------------------------------
def service_name_for(settings: ServerSettings) -> str:
    """settings.service_name, else `predmesh-<service>` from the env prefix (PREDMESH_GATEWAY_ -> gateway)."""
    if settings.service_name:
        return settings.service_name
    prefix = str(settings.model_config.get("env_prefix") or "")
    parts = [p for p in prefix.lower().split("_") if p and p != "predmesh"]
    return "predmesh-" + "-".join(parts) if parts else "predmesh"


def configure_tracing(settings: ServerSettings) -> bool:
    """Install the OTLP-exporting tracer provider once per process; True when tracing is on."""
    global _configured
    if _configured is not None:
        return True
    if not settings.otlp_endpoint:
        return tracing_enabled()
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    except ImportError as err:  # e.g. xds-protos' old opentelemetry/proto over opentelemetry-proto's
        log.error("tracing disabled: the OTLP exporter cannot be imported (%s); reinstall opentelemetry-proto", err)
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name_for(settings)}),
        sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)),
    )
    endpoint = settings.otlp_endpoint
    provider.add_span_processor(BatchSpanProcessor(otlp_exporter(settings, OTLPSpanExporter)))
    trace.set_tracer_provider(provider)
    _configured = provider
    log.info("tracing to OTLP collector %s as %s", endpoint, service_name_for(settings))
    return True


def otlp_exporter(settings: ServerSettings, exporter_class: Any = None) -> Any:
    """The OTLP/gRPC span exporter for `settings.otlp_endpoint`: TLS verified with `otlp_tls_ca_path`
    (and a client certificate with `otlp_tls_cert_path`/`_key_path`), plaintext without a CA.
    Reads the PEM files (blocking; called once at start)."""
    if exporter_class is None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as exporter_class
    endpoint = settings.otlp_endpoint
    if settings.otlp_tls_ca_path is None:
        if settings.otlp_tls_cert_path or settings.otlp_tls_key_path:
            raise ValueError("otlp_tls_cert_path/otlp_tls_key_path need otlp_tls_ca_path (TLS to the collector)")
        return exporter_class(endpoint=endpoint, insecure=True)
    if bool(settings.otlp_tls_cert_path) != bool(settings.otlp_tls_key_path):
        raise ValueError("otlp_tls_cert_path and otlp_tls_key_path go together")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=settings.otlp_tls_ca_path.read_bytes(),
        private_key=settings.otlp_tls_key_path.read_bytes() if settings.otlp_tls_key_path else None,
        certificate_chain=settings.otlp_tls_cert_path.read_bytes() if settings.otlp_tls_cert_path else None,
    )
    return exporter_class(endpoint=endpoint, insecure=False, credentials=credentials)


def tracing_enabled() -> bool:
    """True once a real (SDK) tracer provider is installed in this process."""
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def force_flush(timeout_s: float = 2.0) -> None:
    """Export buffered spans now (blocking; call from a thread in async code)."""
    provider = trace.get_tracer_provider()
    flush = getattr(provider, "force_flush", None)
    if flush is not None:
        flush(int(timeout_s * 1000))


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


# -- current context ----------------------------------------------------------------------
def current_trace_id() -> str:
    """32-hex trace id of the current span ('' when there is none)."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


def current_traceparent() -> str:
    """W3C traceparent of the current span ('' when there is none)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", "")


def traceparent_of(current: Span) -> str:
    """W3C traceparent naming `current` as the parent ('' for an invalid span)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(current))
    return carrier.get("traceparent", "")


def context_from_traceparent(traceparent: str) -> otel_context.Context | None:
    """A parent context from a W3C traceparent string (None when empty or malformed)."""
    if not traceparent:
        return None
    ctx = propagate.extract({"traceparent": traceparent})
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Span]:
    """An INTERNAL span around a block (no-op span when tracing is off)."""
    with tracer().start_as_current_span(name, attributes=attributes or None) as current:
        yield current


@contextmanager
def outgoing_call(name: str, **attributes: Any) -> Iterator[dict[str, str] | None]:
    """A CLIENT span around a call made through a foreign client (tritonclient), yielding
    the W3C headers that carry it to the server; yields None while tracing is off."""
    if not tracing_enabled():
        yield None
        return
    with tracer().start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes or None):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        yield carrier


# -- gRPC server --------------------------------------------------------------------------
class TracingServerInterceptor(grpc.aio.ServerInterceptor):
    """Extract W3C context from metadata; one SERVER span per RPC with its gRPC status code.

    `GrpcServer` installs it only while tracing is on. Handlers are wrapped once per method;
    a unary RPC runs in a plain try/finally. A caller that sent an unsampled context gets no
    span: its context is only attached (a contextvar), so upstream calls carry the decision on.
    """

    def __init__(self) -> None:
        self._cache = HandlerCache(self._wrap)

    async def intercept_service(
        self,
        continuation: Any,
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        if method.startswith(_HEALTH_PREFIX):
            return handler
        if (handler.stream_unary is not None or handler.stream_stream is not None) and not any(
            k == "traceparent" for k, _ in (handler_call_details.invocation_metadata or ())
        ):
            return handler  # a long-lived stream, not a request: no span
        return self._cache.get(handler, method)

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        return rewrap(handler, method, self._around, unary=self._unary)

    def _unary(self, inner: Behaviour, method: str, _streaming: bool) -> Behaviour:
        name = method.lstrip("/")
        svc, rpc = split_method(method)
        attrs = {"rpc.system": "grpc", "rpc.service": svc, "rpc.method": rpc}

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            parent = _parent_of(context.invocation_metadata())
            if parent is not None and not trace.get_current_span(parent).get_span_context().trace_flags.sampled:
                token = otel_context.attach(parent)
                try:
                    return await inner(request, context)
                finally:
                    otel_context.detach(token)
            with tracer().start_as_current_span(
                name,
                context=parent,
                kind=SpanKind.SERVER,
                attributes=attrs,
                record_exception=False,
                set_status_on_exception=False,
            ) as current:
                error: BaseException | None = None
                try:
                    return await inner(request, context)
                except BaseException as err:
                    error = err
                    raise
                finally:
                    _set_status(current, status_of(context, error))

        return call

    @asynccontextmanager
    async def _around(self, method: str, _streaming: bool, context: grpc.aio.ServicerContext) -> Any:
        svc, rpc = split_method(method)
        with tracer().start_as_current_span(
            method.lstrip("/"),
            context=_parent_of(context.invocation_metadata()),
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": svc, "rpc.method": rpc},
            record_exception=False,
            set_status_on_exception=False,
        ) as current:
            error: BaseException | None = None
            try:
                yield
            except BaseException as err:
                error = err
                raise
            finally:
                _set_status(current, status_of(context, error))


def _parent_of(metadata: Any) -> otel_context.Context | None:
    """The caller's W3C context from gRPC metadata (None when it sent none)."""
    carrier = {k: v for k, v in (metadata or ()) if k in _TRACE_KEYS and isinstance(v, str)}
    return propagate.extract(carrier) if carrier else None


def _set_status(current: Span, code: grpc.StatusCode) -> None:
    current.set_attribute("rpc.grpc.status_code", code.value[0])
    if code is not grpc.StatusCode.OK:
        current.set_status(Status(StatusCode.ERROR, code.name))


# -- gRPC client --------------------------------------------------------------------------
def _with_context(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if not carrier:
        return details
    metadata = grpc.aio.Metadata(*(tuple(details.metadata or ())))
    for key, value in carrier.items():
        metadata[key] = value
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


def _method_name(details: grpc.aio.ClientCallDetails) -> str:
    method = details.method
    return (method.decode() if isinstance(method, bytes) else str(method)).lstrip("/")


class _UnaryUnaryTracing(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        if not tracing_enabled():
            return await continuation(client_call_details, request)
        current_ctx = trace.get_current_span().get_span_context()
        if current_ctx.is_valid and not current_ctx.trace_flags.sampled:
            return await continuation(_with_context(client_call_details), request)  # carry the decision only
        name = _method_name(client_call_details)
        svc, rpc = split_method(name)
        with tracer().start_as_current_span(
            name,
            kind=SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "rpc.service": svc, "rpc.method": rpc},
            record_exception=False,
            set_status_on_exception=False,
        ) as current:
            call = await continuation(_with_context(client_call_details), request)
            code = await call.code()
            _set_status(current, code)
            return call


class _UnaryStreamContext(grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(_with_context(client_call_details), request)


class _StreamUnaryContext(grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await continuation(_with_context(client_call_details), request_iterator)


class _StreamStreamContext(grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await continuation(_with_context(client_call_details), request_iterator)


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """Interceptors for an upstream channel: CLIENT spans on unary calls, context on every call."""
    return [_UnaryUnaryTracing(), _UnaryStreamContext(), _StreamUnaryContext(), _StreamStreamContext()]


# -- Kafka headers ------------------------------------------------------------------------
KafkaHeaders = Sequence[tuple[str, str | bytes | None]]


def inject_headers(headers: list[tuple[str, str | bytes | None]] | None = None) -> list[tuple[str, str | bytes | None]]:
    """`headers` plus the current W3C context (`traceparent`, `tracestate`) as bytes values."""
    out = list(headers or [])
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    out.extend((k, v.encode()) for k, v in carrier.items())
    return out


def extract_headers(headers: KafkaHeaders | Mapping[str, str | bytes | None] | None) -> otel_context.Context:
    """The trace context carried by Kafka record headers (empty context when there is none)."""
    items: Iterable[tuple[str, str | bytes | None]] = (
        headers.items() if isinstance(headers, Mapping) else (headers or ())
    )
    carrier: dict[str, str] = {}
    for key, value in items:
        if key in _TRACE_KEYS and value is not None:
            carrier[key] = value.decode() if isinstance(value, bytes) else value
    return propagate.extract(carrier)


def trace_id_of_headers(headers: KafkaHeaders | None) -> str:
    """32-hex trace id from Kafka record headers ('' when absent)."""
    ctx = trace.get_current_span(extract_headers(headers)).get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


# -- micro-batches --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class QueuedTrace:
    """What a batcher keeps per queued request: its trace context and when it was queued."""

    context: otel_context.Context
    enqueued_ns: int

    @property
    def span_context(self) -> trace.SpanContext:
        return trace.get_current_span(self.context).get_span_context()


def enqueue_trace() -> QueuedTrace:
    """Capture the caller's context when a request enters a queue (call on the request's task)."""
    return QueuedTrace(otel_context.get_current(), time.time_ns())


@contextmanager
def batch_span(
    name: str,
    queued: Sequence[QueuedTrace],
    attributes: Mapping[str, Any] | None = None,
    queue_span_name: str = "queue_wait",
) -> Iterator[Span]:
    """Close one `queue_wait` span per request and run the batch in ONE span linked to each request.

    For every entry of `queued` a span `queue_span_name` is recorded as a child of that
    request's context, from its enqueue time to now (attribute `batch.size`). Then a span
    `name` is started as a new ROOT (a batch belongs to no single trace) with one Link
    per valid request context and `batch.size`, made current for the block. Exceptions
    mark the batch span as an error and propagate.
    """
    now = time.time_ns()
    t = tracer()
    size = len(queued)
    for item in queued:
        if item.span_context.is_valid:
            t.start_span(
                queue_span_name, context=item.context, start_time=item.enqueued_ns, attributes={"batch.size": size}
            ).end(end_time=now)
    links = [Link(item.span_context, {"batch.size": size}) for item in queued if item.span_context.is_valid]
    attrs: dict[str, Any] = {"batch.size": size, **(attributes or {})}
    with t.start_as_current_span(
        name, context=otel_context.Context(), links=links, attributes=attrs, start_time=now
    ) as current:
        yield current
