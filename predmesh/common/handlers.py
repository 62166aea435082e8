"""Re-wrapping grpc.aio method handlers: shared by the server interceptors in predmesh.common.

A server interceptor that needs to run code around every RPC gets the handler from
`continuation`, then `rewrap(handler, around)` returns an equivalent handler whose
behaviour runs inside `around`. `around(method, streaming_request, context)` is an async
context manager factory: it is entered before the behaviour runs and exited when the
unary call returns or the response stream ends (with the exception, if any).

`around` is entered once per RPC and an async context manager costs a generator and several
awaits, so hot interceptors pass `unary=`: a function that wraps a unary-response behaviour
directly (a plain try/finally). `HandlerCache` keeps the wrapped handler per method, so an
interceptor's per-call work is one dict lookup instead of building handlers on every RPC.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import grpc

Around = Callable[[str, bool, grpc.aio.ServicerContext], AbstractAsyncContextManager[Any]]
Behaviour = Callable[..., Awaitable[Any]]
# wrap_unary(inner behaviour, method, request_streaming) -> behaviour
UnaryWrap = Callable[[Behaviour, str, bool], Behaviour]


def rewrap(
    handler: grpc.RpcMethodHandler, method: str, around: Around, unary: UnaryWrap | None = None
) -> grpc.RpcMethodHandler:
    """`handler` with each behaviour run inside `around(method, request_streaming, context)`;
    unary-response behaviours are wrapped by `unary(inner, method, request_streaming)` instead when given."""
    ser = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        inner = handler.unary_unary
        wrapped = unary(inner, method, False) if unary else _unary(inner, method, False, around)
        return grpc.unary_unary_rpc_method_handler(wrapped, **ser)
    if handler.stream_unary is not None:
        inner = handler.stream_unary
        wrapped = unary(inner, method, True) if unary else _unary(inner, method, True, around)
        return grpc.stream_unary_rpc_method_handler(wrapped, **ser)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(_stream(handler.unary_stream, method, False, around), **ser)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(_stream(handler.stream_stream, method, True, around), **ser)
    return handler


def _unary(inner: Callable[..., Any], method: str, streaming: bool, around: Around) -> Callable[..., Awaitable[Any]]:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        async with around(method, streaming, context):
            return await inner(request, context)

    return call


def _stream(inner: Callable[..., Any], method: str, streaming: bool, around: Around) -> Callable[..., Any]:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async with around(method, streaming, context):
            result = inner(request, context)
            if hasattr(result, "__aiter__"):
                async for item in result:
                    yield item
            else:
                await result

    return call


class HandlerCache:
    """The wrapped handler of each method, built once by `wrap(handler, method)`.

    grpc.aio asks every interceptor for the handler on every RPC; the inner handler of a
    method is the same object each time (registered once), so the wrapped one is reused
    while it stays the same. Bounded by the number of registered methods (unknown methods
    have no handler and are not cached). Used from the server's event loop only.
    """

    def __init__(self, wrap: Callable[[grpc.RpcMethodHandler, str], grpc.RpcMethodHandler]) -> None:
        self._wrap = wrap
        self._by_method: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def get(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        entry = self._by_method.get(method)
        if entry is not None and entry[0] is handler:
            return entry[1]
        wrapped = self._wrap(handler, method)
        self._by_method[method] = (handler, wrapped)
        return wrapped


def split_method(method: str) -> tuple[str, str]:
    """'/pkg.Service/Method' -> ('pkg.Service', 'Method')."""
    service, _, name = method.lstrip("/").rpartition("/")
    return service or "unknown", name or method


def status_of(context: grpc.aio.ServicerContext, error: BaseException | None) -> grpc.StatusCode:
    """The status an RPC ended with, as seen from an interceptor outside the ErrorInterceptor."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):
        for candidate in grpc.StatusCode:
            if candidate.value[0] == code:
                return candidate
    if error is None:
        return grpc.StatusCode.OK
    if isinstance(error, BaseException) and type(error).__name__ == "CancelledError":
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN
