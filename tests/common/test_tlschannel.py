"""A client's certificate rotates without restarting it (predmesh.common.tlschannel through real servers).

The server side is a real mTLS GrpcServer. The mesh moves to a new CA: the server comes back
requiring certificates of the new CA only, the client's files are replaced (atomically, as
kubelet swaps a Secret), and the client's existing channel and stub call the new server
without being re-created; the old credentials are refused there.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from predmesh.common.grpcclient import channel
from predmesh.common.grpcserver import GrpcServer
from predmesh.common.settings import ServerSettings
from predmesh.common.tls import TlsFiles, channel_credentials
from predmesh.common.tlschannel import ReloadingChannel
from predmesh.local.pki import LocalCA

pytestmark = pytest.mark.timeout(60)


def issue(ca: LocalCA, identity: str) -> TlsFiles:
    paths = ca.issue(identity, [identity, "localhost", "127.0.0.1"])
    return TlsFiles(paths.cert, paths.key, ca.cert_path)


def install(source: TlsFiles, mounted: Path) -> TlsFiles:
    """Copy a certificate set into `mounted` with write-then-rename (what a Secret update looks like)."""
    mounted.mkdir(parents=True, exist_ok=True)
    out = TlsFiles(mounted / "tls.crt", mounted / "tls.key", mounted / "ca.crt")
    for src, dst in ((source.cert, out.cert), (source.key, out.key), (source.ca, out.ca)):
        tmp = dst.with_suffix(".new")
        shutil.copyfile(src, tmp)
        tmp.replace(dst)
    return out


async def serve(files: TlsFiles, port: int = 0) -> GrpcServer:
    server = GrpcServer(
        ServerSettings(
            port=port,
            grace_s=0.1,
            tls_cert_path=files.cert,
            tls_key_path=files.key,
            tls_ca_path=files.ca,
            allowed_clients={"/grpc.health.v1.Health/*": ["gateway"]},
        )
    )
    await server.start()
    return server


async def check(stub: health_pb2_grpc.HealthStub) -> grpc.StatusCode:
    try:
        await stub.Check(health_pb2.HealthCheckRequest(), timeout=3)
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


async def test_rotated_client_certificate_is_used_without_restart(tmp_path: Path) -> None:
    old_ca, new_ca = LocalCA(tmp_path / "old"), LocalCA(tmp_path / "new")
    mounted = install(issue(old_ca, "gateway"), tmp_path / "mounted")
    server = await serve(issue(old_ca, "features"))
    client = channel(server.address, mounted, poll_s=0.05)
    assert isinstance(client, ReloadingChannel)
    stub = health_pb2_grpc.HealthStub(client)  # made once, before the rotation
    try:
        assert await check(stub) == grpc.StatusCode.OK
        port = int(server.address.rsplit(":", 1)[1])
        await server.stop()
        # The mesh moved to a new CA: the server only accepts certificates the new CA signed.
        server = await serve(issue(new_ca, "features"), port=port)
        async with grpc.aio.secure_channel(server.address, channel_credentials(issue(old_ca, "gateway"))) as stale:
            assert await check(health_pb2_grpc.HealthStub(stale)) == grpc.StatusCode.UNAVAILABLE
        install(issue(new_ca, "gateway"), tmp_path / "mounted")
        assert await client.check_now() or client.generation == 1  # the poll may have seen it first
        assert client.generation == 1
        assert await check(stub) == grpc.StatusCode.OK  # same channel object, same stub, new certificate
    finally:
        await client.close()
        await server.stop()


async def test_a_broken_certificate_set_keeps_the_current_channel(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path / "ca")
    mounted = install(issue(ca, "gateway"), tmp_path / "mounted")
    server = await serve(issue(ca, "features"))
    client = channel(server.address, mounted, poll_s=0)
    assert isinstance(client, ReloadingChannel)
    stub = health_pb2_grpc.HealthStub(client)
    try:
        assert await check(stub) == grpc.StatusCode.OK
        other = issue(ca, "intruder")  # a key that does not belong to the mounted certificate
        shutil.copyfile(other.key, mounted.key)
        assert not await client.check_now()
        assert client.generation == 0
        assert await check(stub) == grpc.StatusCode.OK
    finally:
        await client.close()
        await server.stop()
