"""Tracing through real grpc.aio servers and channels, Kafka header carriers, batch spans with links."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AnyValue

from predmesh.common import errors, telemetry
from predmesh.common.grpcclient import insecure_channel
from predmesh.common.grpcserver import GrpcServer
from predmesh.common.settings import ServerSettings
from tests.common.tracing_support import memory_exporter

SERVICE = "test.Traced"
UPSTREAM: dict[str, grpc.aio.Channel] = {}


async def front(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    """Calls the back service through an insecure_channel (client interceptor) inside its span."""
    if request == b"missing":
        raise errors.NotFound("nothing here")
    with telemetry.span("front.work"):
        reply = await UPSTREAM["back"].unary_unary(f"/{SERVICE}/Back")(request, timeout=5)
    return b"front:" + reply


async def back(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return telemetry.current_trace_id().encode()


async def bidi(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request


def parent_id(span: ReadableSpan) -> int:
    """The span id of `span`'s parent; fails when `span` is a root."""
    assert span.parent is not None, f"{span.name} has no parent"
    return span.parent.span_id


def attributes(span: ReadableSpan) -> Mapping[str, AnyValue]:
    assert span.attributes is not None, f"{span.name} has no attributes"
    return span.attributes


def _register(_: object, server: grpc.aio.Server) -> None:
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Front": grpc.unary_unary_rpc_method_handler(front),
            "Back": grpc.unary_unary_rpc_method_handler(back),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        },
    )
    server.add_generic_rpc_handlers((handler,))


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return memory_exporter()


@pytest.fixture
async def server(spans: InMemorySpanExporter) -> AsyncIterator[GrpcServer]:
    """Tracing is installed first: channels get tracing interceptors only when it is on."""
    srv = GrpcServer(ServerSettings(port=0, grace_s=0.1))
    srv.add_servicer(_register, None, SERVICE)
    await srv.start()
    UPSTREAM["back"] = insecure_channel(srv.address)
    yield srv
    await UPSTREAM.pop("back").close()
    await srv.stop()


async def test_one_trace_across_server_client_and_server(server: GrpcServer, spans: InMemorySpanExporter) -> None:
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("caller") as caller:
        async with insecure_channel(server.address) as channel:
            reply = await channel.unary_unary(f"/{SERVICE}/Front")(b"x", timeout=5)
    trace_id = format(caller.get_span_context().trace_id, "032x")
    assert reply == b"front:" + trace_id.encode()  # the back server saw the caller's trace
    finished = {(s.name, s.kind): s for s in spans.get_finished_spans()}
    front_server = finished[(f"{SERVICE}/Front", SpanKind.SERVER)]
    front_client = finished[(f"{SERVICE}/Front", SpanKind.CLIENT)]
    back_client = finished[(f"{SERVICE}/Back", SpanKind.CLIENT)]
    back_server = finished[(f"{SERVICE}/Back", SpanKind.SERVER)]
    work = finished[("front.work", SpanKind.INTERNAL)]
    assert {s.context.trace_id for s in (front_server, front_client, back_client, back_server, work)} == {
        caller.get_span_context().trace_id
    }
    assert parent_id(front_client) == caller.get_span_context().span_id
    assert parent_id(front_server) == front_client.context.span_id
    assert parent_id(back_client) == work.context.span_id
    assert parent_id(back_server) == back_client.context.span_id
    assert attributes(front_server)["rpc.grpc.status_code"] == 0
    assert attributes(front_server)["rpc.method"] == "Front"


async def test_server_span_records_the_mapped_status_code(server: GrpcServer, spans: InMemorySpanExporter) -> None:
    async with insecure_channel(server.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await channel.unary_unary(f"/{SERVICE}/Front")(b"missing", timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    server_span = next(s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER)
    client_span = next(s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT)
    assert attributes(server_span)["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert not server_span.status.is_ok
    assert attributes(client_span)["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert server_span.context.trace_id == client_span.context.trace_id


async def test_unsampled_caller_gets_no_spans_but_its_trace_reaches_upstream(
    server: GrpcServer, spans: InMemorySpanExporter
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    metadata = (("traceparent", f"00-{trace_id}-00f067aa0ba902b7-00"),)  # flags 00: not sampled
    async with grpc.aio.insecure_channel(server.address) as channel:  # a foreign caller
        reply = await channel.unary_unary(f"/{SERVICE}/Front")(b"x", timeout=5, metadata=metadata)
    assert reply == b"front:" + trace_id.encode()  # the back server ran in the caller's trace
    assert spans.get_finished_spans() == ()  # ... and nobody recorded a span of it


async def test_untraced_streams_and_health_get_no_span(server: GrpcServer, spans: InMemorySpanExporter) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:  # no interceptors, no context
        call = channel.stream_stream(f"/{SERVICE}/Bidi")(iter([b"a", b"b"]))
        assert [m async for m in call] == [b"a", b"b"]
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert spans.get_finished_spans() == ()


def test_kafka_headers_round_trip() -> None:
    memory_exporter()
    with telemetry.span("produce") as current:
        headers = telemetry.inject_headers([("model", b"fraud")])
    assert headers[0] == ("model", b"fraud")
    ctx = telemetry.extract_headers(headers)
    got = trace.get_current_span(ctx).get_span_context()
    assert got.trace_id == current.get_span_context().trace_id
    assert got.span_id == current.get_span_context().span_id
    assert telemetry.trace_id_of_headers(headers) == format(got.trace_id, "032x")
    assert telemetry.trace_id_of_headers([("model", b"x")]) == ""
    assert not trace.get_current_span(telemetry.extract_headers(None)).get_span_context().is_valid


async def test_batch_span_links_every_request_and_records_queue_waits() -> None:
    """The orchestrator batcher's pattern: capture at enqueue, one linked batch span at execution."""
    spans = memory_exporter()
    tracer = trace.get_tracer("test")
    queued: list[telemetry.QueuedTrace] = []
    requests = []
    for i in range(3):
        with tracer.start_as_current_span(f"request-{i}") as req:
            queued.append(telemetry.enqueue_trace())
            requests.append(req.get_span_context())
    queued.append(telemetry.QueuedTrace(trace.set_span_in_context(trace.INVALID_SPAN), 0))  # untraced request
    await asyncio.sleep(0.01)
    with telemetry.batch_span("batch.execute", queued, {"model": "fraud"}) as batch:
        assert trace.get_current_span() is batch
    finished = spans.get_finished_spans()
    batch_span = next(s for s in finished if s.name == "batch.execute")
    waits = [s for s in finished if s.name == "queue_wait"]
    assert batch_span.parent is None  # a batch is a root of its own
    assert attributes(batch_span)["batch.size"] == 4
    assert attributes(batch_span)["model"] == "fraud"
    assert [link.context.span_id for link in batch_span.links] == [r.span_id for r in requests]
    assert sorted(parent_id(w) for w in waits) == sorted(r.span_id for r in requests)
    for wait in waits:
        assert wait.start_time is not None and wait.end_time is not None
        assert wait.end_time - wait.start_time >= 5_000_000  # waited ~10 ms in the queue


def test_service_name_and_disabled_setup() -> None:
    from pydantic_settings import SettingsConfigDict

    class GatewayLike(ServerSettings):
        model_config = SettingsConfigDict(env_prefix="PREDMESH_GATEWAY_")

    assert telemetry.service_name_for(GatewayLike()) == "predmesh-gateway"
    assert telemetry.service_name_for(GatewayLike(service_name="edge-gw")) == "edge-gw"
    assert telemetry.service_name_for(ServerSettings()) == "predmesh"


def test_channels_get_tracing_interceptors_only_while_tracing_is_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from predmesh.common import grpcclient

    seen: list[object] = []
    monkeypatch.setattr(grpcclient.grpc.aio, "insecure_channel", lambda *a, **kw: seen.append(kw["interceptors"]))
    monkeypatch.setattr(grpcclient, "tracing_enabled", lambda: False)
    grpcclient.insecure_channel("127.0.0.1:1")
    monkeypatch.setattr(grpcclient, "tracing_enabled", lambda: True)
    grpcclient.insecure_channel("127.0.0.1:1")
    assert seen[0] is None
    assert isinstance(seen[1], list) and len(seen[1]) == 4
