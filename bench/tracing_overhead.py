"""Per-hop cost of predmesh's gRPC observability (not a test; run by hand).

    python -m bench.tracing_overhead off      # GrpcServer + insecure_channel, tracing off
    python -m bench.tracing_overhead on       # same, every RPC traced, OTLP export to a local collector
    python -m bench.tracing_overhead bare     # plain grpc.aio server and channel (no interceptors)
    python -m bench.tracing_overhead before   # only the ErrorInterceptor (GrpcServer before this change)

Each run: a front RPC that calls a back RPC over an upstream channel (2 hops, like gateway -> features),
sequential calls from one client; prints p50/p99/mean in microseconds.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

import grpc

from predmesh.common import telemetry
from predmesh.common.grpcclient import CHANNEL_OPTIONS, insecure_channel
from predmesh.common.grpcserver import ErrorInterceptor, GrpcServer
from predmesh.common.settings import ServerSettings
from tests.common.otlp_collector import OtlpCollector

N = 3000
UP: dict[str, grpc.aio.Channel] = {}


async def front(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return await UP["back"].unary_unary("/b.B/Back")(request, timeout=5)


async def back(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


def _register(_: object, server: grpc.aio.Server) -> None:
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "b.B",
                {
                    "Front": grpc.unary_unary_rpc_method_handler(front),
                    "Back": grpc.unary_unary_rpc_method_handler(back),
                },
            ),
        )
    )


async def main(mode: str) -> None:
    collector = None
    settings = ServerSettings(port=0, grace_s=0.1)
    if mode == "on":
        collector = OtlpCollector()
        settings = ServerSettings(port=0, grace_s=0.1, otlp_endpoint=f"127.0.0.1:{collector.start()}")
    if mode in ("bare", "before"):
        # "before": what GrpcServer was before observability (only the ErrorInterceptor)
        server = grpc.aio.server(interceptors=[ErrorInterceptor()] if mode == "before" else None)
        _register(None, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        address = f"127.0.0.1:{port}"
        UP["back"] = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
    else:
        srv = GrpcServer(settings)
        srv.add_servicer(_register, None, "b.B")
        await srv.start()
        address = srv.address
        UP["back"] = insecure_channel(address)
    bare = mode in ("bare", "before")
    channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) if bare else insecure_channel(address)
    call = channel.unary_unary("/b.B/Front")
    for _ in range(300):
        await call(b"x", timeout=5)
    times = []
    for _ in range(N):
        t0 = time.perf_counter()
        await call(b"x", timeout=5)
        times.append((time.perf_counter() - t0) * 1e6)
    times.sort()
    print(
        f"{mode}: p50 {times[N // 2]:.0f} us  p99 {times[int(N * 0.99)]:.0f} us  mean {statistics.mean(times):.0f} us"
        + (f"  (spans exported so far: {len(collector.spans())})" if collector else "")
    )
    if collector:
        telemetry.force_flush(5.0)
        collector.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "off"))
