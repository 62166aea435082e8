"""CPU cost of mutual TLS on one internal hop (not a test; run by hand, bounded, loopback only).

    python -m bench.tls_cost            # both modes, 3,000 unary calls each at 16 in flight

The server is a real `GrpcServer` (all interceptors; with mTLS also the per-RPC identity check)
in its own process, serving the gRPC health Check RPC (no application work, so the numbers are
the transport's). The client is one grpc.aio channel in this process. Reported: CPU time per
request of the server process (from /proc) and of the client, plaintext vs mTLS (ECDSA P-256
certificates from predmesh.local.pki; the TLS handshake happens once per channel, so this is
the steady-state per-request cost: record encryption plus the identity check).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from predmesh.common import grpcclient
from predmesh.common.tls import TlsFiles

N = 3000
IN_FLIGHT = 16
ROUNDS = 3


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _serve() -> None:
    from predmesh.common.grpcserver import GrpcServer
    from predmesh.common.settings import ServerSettings

    settings = ServerSettings()  # host/port/tls_* from PREDMESH_BENCH_* below
    server = GrpcServer(settings)
    port = await server.start()
    print(port, flush=True)
    await asyncio.Event().wait()


async def _drive(address: str, creds: grpc.ChannelCredentials | None, reloading: TlsFiles | None = None) -> None:
    if reloading is not None:  # what the services use: predmesh.common.tlschannel.ReloadingChannel
        channel = grpcclient.channel(address, reloading)
    else:
        channel = grpc.aio.secure_channel(address, creds) if creds else grpc.aio.insecure_channel(address)
    async with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)  # connect (and handshake) first
        queue = iter(range(N))

        async def worker() -> None:
            for _ in queue:
                await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)

        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))


def measure(tls: bool, pki: Path, reload: bool = False) -> tuple[float, float, float]:
    """(server CPU us/request, client CPU us/request, requests/s); `reload`: the client is the
    services' certificate-reloading channel instead of a plain secure channel."""
    env = {**os.environ, "PREDMESH_BENCH_MODE": "serve"}
    creds = None
    files = TlsFiles(pki / "gateway.crt", pki / "gateway.key", pki / "ca.crt") if reload else None
    if tls:
        env |= {
            "TLS_CERT_PATH": str(pki / "features.crt"),
            "TLS_KEY_PATH": str(pki / "features.key"),
            "TLS_CA_PATH": str(pki / "ca.crt"),
            "ALLOWED_CLIENTS": '{"/grpc.health.v1.Health/*": ["gateway"]}',
        }
        creds = grpc.ssl_channel_credentials(
            (pki / "ca.crt").read_bytes(), (pki / "gateway.key").read_bytes(), (pki / "gateway.crt").read_bytes()
        )
    proc = subprocess.Popen([sys.executable, "-m", "bench.tls_cost"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        address = f"127.0.0.1:{port}"
        asyncio.run(_drive(address, creds, files))  # warm-up run, not measured
        server0, client0, wall0 = _cpu_s(proc.pid), time.process_time(), time.perf_counter()
        asyncio.run(_drive(address, creds, files))
        server1, client1, wall1 = _cpu_s(proc.pid), time.process_time(), time.perf_counter()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return (server1 - server0) / N * 1e6, (client1 - client0) / N * 1e6, N / (wall1 - wall0)


def main() -> None:
    if os.environ.get("PREDMESH_BENCH_MODE") == "serve":
        for name in ("TLS_CERT_PATH", "TLS_KEY_PATH", "TLS_CA_PATH", "ALLOWED_CLIENTS"):
            if name in os.environ:
                os.environ[f"PREDMESH_BENCH_{name}"] = os.environ[name]
        from predmesh.common.settings import ServerSettings

        ServerSettings.model_config["env_prefix"] = "PREDMESH_BENCH_"
        asyncio.run(_serve())
        return
    from predmesh.local.pki import LocalCA

    with tempfile.TemporaryDirectory() as tmp:
        ca = LocalCA(Path(tmp))
        for identity in ("features", "gateway"):
            ca.issue(identity, [identity, "localhost", "127.0.0.1"])
        print(f"{N} health Check calls, {IN_FLIGHT} in flight, one channel; CPU per request")
        modes = (("plaintext", False, False), ("mTLS", True, False), ("mTLS-reload", True, True))
        runs: dict[str, list[tuple[float, float, float]]] = {label: [] for label, _, _ in modes}
        for _ in range(ROUNDS):  # alternate the modes: a busy machine affects all alike
            for label, tls, reload in modes:
                runs[label].append(measure(tls, Path(tmp), reload))
                server, client, rate = runs[label][-1]
                print(f"  {label:11s}  server {server:6.0f} us  client {client:6.0f} us  ({rate:,.0f} req/s)")
        print("median:")
        for label, results in runs.items():
            server, client, rate = (statistics.median(r[i] for r in results) for i in range(3))
            print(f"  {label:11s}  server {server:6.0f} us  client {client:6.0f} us  ({rate:,.0f} req/s)", flush=True)


if __name__ == "__main__":
    main()
