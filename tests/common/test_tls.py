"""predmesh.common.tls through a real grpc.aio server: mTLS required, identities, certificate reload."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from predmesh.common.grpcserver import GrpcServer
from predmesh.common.settings import ServerSettings
from predmesh.common.tls import TlsFiles, channel_credentials
from predmesh.local.pki import LocalCA

CHECK = "/grpc.health.v1.Health/Check"


def files(ca: LocalCA, identity: str) -> TlsFiles:
    paths = ca.issue(identity, [identity, "localhost", "127.0.0.1"])
    return TlsFiles(paths.cert, paths.key, ca.cert_path)


async def check(address: str, tls: TlsFiles | None) -> grpc.StatusCode:
    channel = grpc.aio.secure_channel(address, channel_credentials(tls)) if tls else grpc.aio.insecure_channel(address)
    async with channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
        except grpc.aio.AioRpcError as err:
            return err.code()
    return grpc.StatusCode.OK


async def serve(server_files: TlsFiles, rules: dict[str, list[str]]) -> GrpcServer:
    settings = ServerSettings(
        port=0,
        grace_s=0.1,
        tls_cert_path=server_files.cert,
        tls_key_path=server_files.key,
        tls_ca_path=server_files.ca,
        tls_poll_s=0.0,
        allowed_clients=rules,
    )
    server = GrpcServer(settings)
    await server.start()
    return server


async def test_clients_need_a_certificate_of_an_allowed_identity(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path / "ca")
    server = await serve(files(ca, "features"), {CHECK: ["gateway"]})
    try:
        assert await check(server.address, None) == grpc.StatusCode.UNAVAILABLE  # plaintext: no handshake
        assert await check(server.address, files(ca, "gateway")) == grpc.StatusCode.OK
        assert await check(server.address, files(ca, "intruder")) == grpc.StatusCode.PERMISSION_DENIED
        other = LocalCA(tmp_path / "other")
        forged = TlsFiles(other.issue("gateway", ["gateway"]).cert, other.dir / "gateway.key", ca.cert_path)
        assert await check(server.address, forged) == grpc.StatusCode.UNAVAILABLE  # not signed by the mesh CA
    finally:
        await server.stop()


async def test_server_certificate_is_reloaded_without_restart(tmp_path: Path) -> None:
    old_ca, new_ca = LocalCA(tmp_path / "old"), LocalCA(tmp_path / "new")
    live = files(old_ca, "features")
    server = await serve(live, {})
    try:
        assert await check(server.address, files(old_ca, "gateway")) == grpc.StatusCode.OK
        rotated = files(new_ca, "features")
        live.key.write_bytes(rotated.key.read_bytes())
        live.cert.write_bytes(rotated.cert.read_bytes())
        live.ca.write_bytes(new_ca.cert_path.read_bytes())
        assert await check(server.address, files(new_ca, "gateway")) == grpc.StatusCode.OK
        assert await check(server.address, files(new_ca, "gateway")) == grpc.StatusCode.OK
    finally:
        await server.stop()


def test_partial_tls_settings_are_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs all of"):
        TlsFiles.from_settings(tmp_path / "a.crt", None, None)


async def test_plaintext_health_port_for_probes_serves_only_health(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path / "ca")
    own = files(ca, "features")
    settings = ServerSettings(
        port=0, grace_s=0.1, tls_cert_path=own.cert, tls_key_path=own.key, tls_ca_path=own.ca, health_port=0
    )
    server = GrpcServer(settings)
    await server.start()
    try:
        probe = f"127.0.0.1:{server.health_port}"
        assert await check(probe, None) == grpc.StatusCode.OK  # kubelet-style plaintext probe
        assert await check(server.address, None) == grpc.StatusCode.UNAVAILABLE  # the service port needs mTLS
        async with grpc.aio.insecure_channel(probe) as channel:
            other = channel.unary_unary("/predmesh.v1.FeatureService/GetFeatures")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await other(b"", timeout=3)
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await server.stop()
