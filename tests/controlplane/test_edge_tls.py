"""Edge TLS with a real Envoy: the certificate comes over SDS from files the control plane watches."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from predmesh.local.envoy import EnvoyProcess
from predmesh.local.pki import LocalCA
from predmesh.local.procs import free_port
from predmesh.v1 import prediction_pb2, prediction_pb2_grpc
from services.controlplane.app import ControlPlaneApp
from services.controlplane.core.config import EdgeTls
from services.controlplane.settings import ControlPlaneSettings
from tests.controlplane.backend import Backend
from tests.controlplane.conftest import Mesh, eventually, mesh_config_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def tls_mesh(backends: list[Backend], tmp_path: Path) -> AsyncIterator[tuple[Mesh, Path]]:
    pki = tmp_path / "pki"
    ca = LocalCA(pki)
    paths = ca.issue("edge", ["localhost", "127.0.0.1"])
    listener_port = free_port()
    config = mesh_config_for(backends, listener_port).model_copy(update={"tls": EdgeTls(enabled=True)})
    settings = ControlPlaneSettings(
        port=0,
        admin_port=0,
        grace_s=0.1,
        edge_tls_cert_path=paths.cert,
        edge_tls_key_path=paths.key,
        edge_tls_poll_s=0.1,
    )
    app = ControlPlaneApp(settings, config=config)
    await app.start()
    envoy = EnvoyProcess(app.address, workdir=tmp_path / "envoy")
    try:
        await asyncio.to_thread(envoy.start)
        yield Mesh(app, envoy, listener_port, backends), pki
    finally:
        await asyncio.to_thread(envoy.stop)
        await app.stop()


async def predict_tls(edge: str, ca_pem: bytes) -> str:
    creds = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    options = [("grpc.ssl_target_name_override", "localhost")]
    async with grpc.aio.secure_channel(edge, creds, options=options) as channel:
        stub = prediction_pb2_grpc.PredictionServiceStub(channel)
        resp = await stub.Predict(prediction_pb2.PredictRequest(model="fraud", entity_id="u1"), timeout=3)
        return resp.model_version


def handshake(port: int, ca_file: Path, max_version: ssl.TLSVersion | None = None) -> str:
    """The negotiated TLS version (raises ssl.SSLError when the handshake fails)."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    if max_version is not None:
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.maximum_version = max_version
    with (
        socket.create_connection(("127.0.0.1", port), timeout=3) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return str(tls.version())


async def test_tls_with_the_ca_succeeds_and_plaintext_fails(tls_mesh: tuple[Mesh, Path]) -> None:
    mesh, pki = tls_mesh
    await eventually(
        lambda: mesh.envoy.stats("listener_manager.total_listeners_active").get(
            "listener_manager.total_listeners_active"
        ),
        what="TLS listener active (certificate received over SDS)",
    )
    assert await asyncio.to_thread(predict_ok, mesh, pki)
    assert (await asyncio.to_thread(handshake, mesh.listener_port, pki / "ca.crt")) in ("TLSv1.2", "TLSv1.3")

    async with grpc.aio.insecure_channel(mesh.edge) as channel:  # h2c to a TLS listener
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await prediction_pb2_grpc.PredictionServiceStub(channel).Predict(
                prediction_pb2.PredictRequest(model="fraud", entity_id="u1"), timeout=3
            )
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE

    other_ca = LocalCA(pki.parent / "other-ca")  # a certificate the client does not trust
    with pytest.raises(ssl.SSLError):
        await asyncio.to_thread(handshake, mesh.listener_port, other_ca.cert_path)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
async def test_tls_below_1_2_is_refused(tls_mesh: tuple[Mesh, Path]) -> None:
    mesh, pki = tls_mesh
    await eventually(lambda: predict_ok(mesh, pki), what="edge serving TLS")
    dump = json.dumps(await asyncio.to_thread(mesh.envoy.config_dump))
    assert '"tls_minimum_protocol_version": "TLSv1_2"' in dump  # what Envoy itself runs with
    assert "BEGIN PRIVATE KEY" not in json.dumps(await asyncio.to_thread(mesh.envoy.config_dump))  # redacted
    with pytest.raises((ssl.SSLError, OSError)):
        await asyncio.to_thread(handshake, mesh.listener_port, pki / "ca.crt", ssl.TLSVersion.TLSv1_1)


def predict_ok(mesh: Mesh, pki: Path) -> bool:
    return asyncio.run(predict_tls(mesh.edge, (pki / "ca.crt").read_bytes())) in ("a", "b")


async def test_certificate_rotation_needs_no_restart(tls_mesh: tuple[Mesh, Path], tmp_path: Path) -> None:
    mesh, pki = tls_mesh
    await eventually(lambda: predict_ok(mesh, pki), what="edge serving TLS")
    pid = mesh.envoy.pid
    new_ca = LocalCA(tmp_path / "new-ca")
    fresh = new_ca.issue("edge", ["localhost"])
    # Replace the watched files in place (as a Secret update does), key first then certificate.
    (pki / "edge.key").write_bytes(fresh.key.read_bytes())
    (pki / "edge.crt").write_bytes(fresh.cert.read_bytes())

    def served_by_new_ca() -> bool:
        try:
            handshake(mesh.listener_port, new_ca.cert_path)
            return True
        except ssl.SSLError:
            return False

    await eventually(served_by_new_ca, what="rotated certificate served")
    assert await asyncio.to_thread(predict_ok, mesh, tmp_path / "new-ca")
    with pytest.raises(ssl.SSLError):
        await asyncio.to_thread(handshake, mesh.listener_port, pki / "ca.crt")
    assert mesh.envoy.pid == pid  # same Envoy process, no restart
