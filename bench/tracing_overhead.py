"""Per-hop cost of predmesh's gRPC observability (not a test; run by hand).

    python -m bench.tracing_overhead off      # GrpcServer + insecure_channel, tracing off
    python -m bench.tracing_overhead on       # same, every RPC traced, OTLP export to a local collector
    python -m bench.tracing_overhead unsampled  # tracing on, sample ratio 0 (spans not sampled)
    python -m bench.tracing_overhead bare     # plain grpc.aio server and channel (no interceptors)
    python -m bench.tracing_overhead before   # only the ErrorInterceptor
    ... [--concurrency 16] [--uvloop]

Each run: a front RPC that calls a back RPC over an upstream channel (2 hops, like gateway -> features),
from one client with `--concurrency` calls in flight; prints p50/p99/mean latency and the process's
CPU time per call in microseconds (client + 2 server hops + 1 upstream call, all in this process).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import grpc

from predmesh.common import telemetry
from predmesh.common.grpcclient import CHANNEL_OPTIONS, insecure_channel
from predmesh.common.grpcserver import ErrorInterceptor, GrpcServer
from predmesh.common.runner import run_loop
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


async def main(mode: str, concurrency: int) -> None:
    collector = None
    settings = ServerSettings(port=0, grace_s=0.1)
    if mode in ("on", "unsampled"):
        collector = OtlpCollector()
        settings = ServerSettings(
            port=0,
            grace_s=0.1,
            otlp_endpoint=f"127.0.0.1:{collector.start()}",
            trace_sample_ratio=0.0 if mode == "unsampled" else 1.0,
        )
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
    times: list[float] = []

    async def worker(n: int) -> None:
        for _ in range(n):
            t0 = time.perf_counter()
            await call(b"x", timeout=5)
            times.append((time.perf_counter() - t0) * 1e6)

    cpu0 = time.process_time()
    await asyncio.gather(*(worker(N // concurrency) for _ in range(concurrency)))
    done = len(times)
    cpu_us = (time.process_time() - cpu0) / done * 1e6
    times.sort()
    print(
        f"{mode} (x{concurrency}): p50 {times[done // 2]:.0f} us  p99 {times[int(done * 0.99)]:.0f} us"
        f"  mean {statistics.mean(times):.0f} us"
        f"  CPU {cpu_us:.0f} us per call (client + 2 server hops + 1 upstream call, one process)"
        + (f"  (spans exported so far: {len(collector.spans())})" if collector else "")
    )
    if collector:
        telemetry.force_flush(5.0)
        collector.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.tracing_overhead")
    parser.add_argument("mode", nargs="?", default="off", choices=["off", "on", "unsampled", "bare", "before"])
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (predmesh.common.runner.run_loop)")
    args = parser.parse_args()
    run_loop(main(args.mode, args.concurrency), use_uvloop=args.uvloop)
