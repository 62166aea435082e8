"""Every branch of the error interceptor, through a real grpc.aio server on a free port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from predmesh.common import errors
from predmesh.common.grpcserver import INTERNAL_MESSAGE, GrpcServer
from predmesh.common.settings import ServerSettings

SERVICE = "test.Echo"
RAISE: dict[str, BaseException] = {}


def _maybe_raise(request: bytes) -> None:
    key = request.decode()
    if key in RAISE:
        raise RAISE[key]


async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    _maybe_raise(request)
    return b"ok:" + request


async def server_stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    yield b"first"
    _maybe_raise(request)
    yield b"second"


async def bidi(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    async for request in requests:
        _maybe_raise(request)
        yield request


async def collect(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
    got = []
    async for request in requests:
        _maybe_raise(request)
        got.append(request)
    return b",".join(got)


async def client_stream_writer(request: bytes, context: grpc.aio.ServicerContext) -> None:
    await context.write(b"written")
    _maybe_raise(request)


def _register(_: object, server: grpc.aio.Server) -> None:
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
            "Collect": grpc.stream_unary_rpc_method_handler(collect),
            "Writer": grpc.unary_stream_rpc_method_handler(client_stream_writer),
        },
    )
    server.add_generic_rpc_handlers((handler,))


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    server = GrpcServer(ServerSettings(port=0, grace_s=0.1))
    server.add_servicer(_register, None, SERVICE)
    await server.start()
    async with grpc.aio.insecure_channel(server.address) as ch:
        yield ch
    await server.stop()


CASES = [
    (errors.InvalidArgument("bad field x"), grpc.StatusCode.INVALID_ARGUMENT, "bad field x"),
    (errors.NotFound("no model"), grpc.StatusCode.NOT_FOUND, "no model"),
    (errors.Unauthenticated("who?"), grpc.StatusCode.UNAUTHENTICATED, "who?"),
    (errors.PermissionDenied("no"), grpc.StatusCode.PERMISSION_DENIED, "no"),
    (errors.ResourceExhausted("full"), grpc.StatusCode.RESOURCE_EXHAUSTED, "full"),
    (errors.Unavailable("down"), grpc.StatusCode.UNAVAILABLE, "down"),
    (errors.DeadlineExceeded("late"), grpc.StatusCode.DEADLINE_EXCEEDED, "late"),
    (errors.FailedPrecondition("state"), grpc.StatusCode.FAILED_PRECONDITION, "state"),
    (ValueError("secret detail"), grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE),
]


@pytest.mark.parametrize(("exc", "code", "message"), CASES)
async def test_unary_errors_map_to_status(channel: grpc.aio.Channel, exc: Exception, code, message) -> None:
    RAISE["boom"] = exc
    call = channel.unary_unary(f"/{SERVICE}/Unary")
    assert await call(b"fine") == b"ok:fine"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(b"boom")
    assert info.value.code() == code
    assert info.value.details() == message


@pytest.mark.parametrize("method", ["ServerStream", "Writer"])
async def test_stream_errors_map_to_status(channel: grpc.aio.Channel, method: str) -> None:
    RAISE["boom"] = errors.NotFound("gone")
    call = channel.unary_stream(f"/{SERVICE}/{method}")
    got = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for item in call(b"boom"):
            got.append(item)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert len(got) == 1  # what was sent before the error still arrived


async def test_bidi_unexpected_error_is_internal_without_detail(channel: grpc.aio.Channel) -> None:
    RAISE["boom"] = RuntimeError("stack detail")
    call = channel.stream_stream(f"/{SERVICE}/Bidi")

    async def requests() -> AsyncIterator[bytes]:
        yield b"a"
        yield b"boom"

    got = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for item in call(requests()):
            got.append(item)
    assert got == [b"a"]
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "stack detail" not in (info.value.details() or "")


@pytest.mark.parametrize(("exc", "code", "message"), [CASES[0], CASES[-1]])
async def test_client_stream_errors_map_to_status(channel: grpc.aio.Channel, exc: Exception, code, message) -> None:
    """The stream_unary branch (client streaming, one response)."""
    RAISE["boom"] = exc
    call = channel.stream_unary(f"/{SERVICE}/Collect")

    async def requests(*items: bytes) -> AsyncIterator[bytes]:
        for item in items:
            yield item

    assert await call(requests(b"a", b"b")) == b"a,b"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(requests(b"a", b"boom", b"c"))
    assert info.value.code() == code
    assert info.value.details() == message


async def test_health_serving_then_not_serving_on_stop() -> None:
    server = GrpcServer(ServerSettings(port=0, grace_s=0.5))
    server.add_servicer(_register, None, SERVICE)
    await server.start()
    async with grpc.aio.insecure_channel(server.address) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        resp = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE))
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Check(health_pb2.HealthCheckRequest(service="unknown.Service"))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE))
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        stopping = asyncio.create_task(server.stop())
        update = await watch.read()  # pushed when stop() flips health, before the server goes away
        assert update.status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()
        await stopping
