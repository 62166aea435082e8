"""The per-call CPU floor of a Python gRPC server (not a test; run by hand).

    python -m bench.grpc_floor [--calls 3000] [--inflight 1,32]

A server process answers the standard health `Check` (a canned reply: no work at all) and a
client process calls it, `--inflight` calls at a time. Printed per configuration: calls/s, the
SERVER process's CPU microseconds per call (from /proc, the client excluded) and the latency.
Configurations: `bare` (grpc.aio server, asyncio loop), `bare+uvloop`, and `predmesh`
(`predmesh.common.grpcserver.GrpcServer` with its metrics and error interceptors, tracing off,
on uvloop as the services run). Whatever a predmesh hop does for a lone request costs at least
this floor on top: the figure to hold a lone request's CPU against (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.cpu import PROC, parse_stat

CONFIGS = ("bare", "bare+uvloop", "predmesh")


async def _serve(config: str, port_file: Path) -> None:
    from grpc_health.v1.health import aio as health_aio

    if config == "predmesh":
        from predmesh.common.grpcserver import GrpcServer
        from predmesh.common.settings import ServerSettings

        server = GrpcServer(ServerSettings(port=0, grace_s=0.1))
        await server.start()
        port = server.port
    else:
        plain = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health_aio.HealthServicer(), plain)
        port = plain.add_insecure_port("127.0.0.1:0")
        await plain.start()
    await asyncio.to_thread(port_file.write_text, str(port))
    await asyncio.Event().wait()


def _server_main(config: str, port_file: str) -> None:
    from predmesh.common.runner import run_loop

    run_loop(_serve(config, Path(port_file)), use_uvloop=config != "bare")


def _cpu_s(pid: int) -> float:
    return parse_stat((PROC / str(pid) / "stat").read_text())[2]


async def _load(port: int, pid: int, inflight: int, calls: int) -> tuple[float, float, float]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest()
        for _ in range(200):  # warm-up
            await stub.Check(request, timeout=5)
        sent = 0

        async def worker() -> None:
            nonlocal sent
            while sent < calls:
                sent += 1
                await stub.Check(request, timeout=5)

        cpu0, t0 = _cpu_s(pid), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(inflight)))
        elapsed, cpu = time.perf_counter() - t0, _cpu_s(pid) - cpu0
    return calls / elapsed, cpu / calls * 1e6, elapsed / calls * inflight * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.grpc_floor")
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--inflight", default="1,32")
    parser.add_argument("--serve", nargs=2, metavar=("CONFIG", "PORT_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _server_main(*args.serve)
        return 0
    for config in CONFIGS:
        with tempfile.TemporaryDirectory() as tmp:
            port_file = Path(tmp) / "port"
            server = subprocess.Popen([sys.executable, "-m", "bench.grpc_floor", "--serve", config, str(port_file)])
            try:
                deadline = time.monotonic() + 30
                while not (port_file.exists() and port_file.read_text()):
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError(f"{config} server did not start")
                    time.sleep(0.05)
                port = int(port_file.read_text())
                for inflight in (int(n) for n in args.inflight.split(",")):
                    rate, cpu_us, latency_ms = asyncio.run(_load(port, server.pid, inflight, args.calls))
                    print(
                        f"{config:12s} {inflight:3d} in flight: {rate:6.0f} calls/s  server CPU {cpu_us:5.0f} us/call"
                        f"  latency {latency_ms:5.2f} ms",
                        flush=True,
                    )
            finally:
                server.kill()
                server.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
