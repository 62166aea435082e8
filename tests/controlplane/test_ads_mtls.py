"""Envoy -> control plane (ADS) over mutual TLS with a real Envoy.

The control plane serves ADS with its `controlplane` certificate and allows only the `envoy`
identity to open the config stream; Envoy's bootstrap presents the `envoy` certificate and
accepts only a server whose SAN is `controlplane`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from predmesh.common.grpcclient import channel
from predmesh.common.tls import TlsFiles
from predmesh.local.envoy import EnvoyProcess
from predmesh.local.pki import LocalCA
from predmesh.local.procs import free_port
from services.controlplane.app import ControlPlaneApp
from services.controlplane.settings import ControlPlaneSettings
from tests.common.test_tlschannel import install
from tests.controlplane.backend import Backend
from tests.controlplane.conftest import Mesh, eventually, mesh_config_for
from tests.controlplane.test_envoy_integration import predict

pytestmark = pytest.mark.timeout(60)

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"


def identity(ca: LocalCA, name: str) -> TlsFiles:
    paths = ca.issue(name, [name, "localhost", "127.0.0.1"])
    return TlsFiles(paths.cert, paths.key, ca.cert_path)


@pytest.fixture
async def ads_mtls(backends: list[Backend], tmp_path: Path) -> AsyncIterator[tuple[Mesh, LocalCA]]:
    ca = LocalCA(tmp_path / "pki")
    own = identity(ca, "controlplane")
    listener_port = free_port()
    settings = ControlPlaneSettings(
        port=0, admin_port=0, grace_s=0.1, tls_cert_path=own.cert, tls_key_path=own.key, tls_ca_path=own.ca
    )
    app = ControlPlaneApp(settings, config=mesh_config_for(backends, listener_port))
    await app.start()
    envoy = EnvoyProcess(app.address, workdir=tmp_path / "envoy", xds_tls=identity(ca, "envoy"))
    try:
        await asyncio.to_thread(envoy.start)
        yield Mesh(app, envoy, listener_port, backends), ca
    finally:
        await asyncio.to_thread(envoy.stop)
        await app.stop()


async def first_listeners(target: str, tls: TlsFiles | None) -> discovery_pb2.DiscoveryResponse:
    """Open an ADS stream as node cluster predmesh-edge and read the first LDS answer."""
    async with channel(target, tls) if tls else grpc.aio.insecure_channel(target) as ch:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(ch)
        request = discovery_pb2.DiscoveryRequest(
            node=base_pb2.Node(id="probe", cluster="predmesh-edge"), type_url=LISTENER
        )

        async def requests() -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
            yield request
            await asyncio.Event().wait()  # keep the stream open until cancelled

        call = stub.StreamAggregatedResources(requests(), timeout=3)
        response = await call.read()
        call.cancel()
        assert isinstance(response, discovery_pb2.DiscoveryResponse)
        return response


async def test_envoy_gets_its_config_over_mtls(ads_mtls: tuple[Mesh, LocalCA]) -> None:
    mesh, _ = ads_mtls
    assert await predict(mesh.edge) in (["a"], ["b"])  # listener, routes and clusters all came over ADS
    nodes = mesh.app.status.all()
    assert [n.node_id for n in nodes] == [mesh.envoy.node_id]
    # The xDS cluster Envoy runs is the TLS one of its bootstrap (not a plaintext fallback), its
    # certificate and CA come from file-based SDS.
    bootstrap = next(c for c in mesh.envoy.config_dump()["configs"] if c["@type"].endswith("BootstrapConfigDump"))
    xds = bootstrap["bootstrap"]["static_resources"]["clusters"][0]
    tls = xds["transport_socket"]["typed_config"]["common_tls_context"]
    assert tls["tls_certificate_sds_secret_configs"][0]["name"] == "xds-client-cert"
    validation = tls["combined_validation_context"]["default_validation_context"]
    assert validation["match_typed_subject_alt_names"][0]["matcher"] == {"exact": "controlplane"}
    secrets = next(c for c in mesh.envoy.config_dump()["configs"] if c["@type"].endswith("SecretsConfigDump"))
    names = {s["name"] for s in secrets.get("dynamic_active_secrets", [])}
    assert names == {"xds-client-cert", "xds-ca"}
    assert mesh.envoy.stats("control_plane.connected_state")["control_plane.connected_state"] == 1


async def test_ads_without_certificate_or_with_another_identity_is_refused(ads_mtls: tuple[Mesh, LocalCA]) -> None:
    mesh, ca = ads_mtls
    with pytest.raises(grpc.aio.AioRpcError) as info:  # plaintext: the TLS handshake never completes
        await first_listeners(mesh.app.address, None)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.aio.AioRpcError) as info:  # a mesh certificate, but not Envoy's identity
        await first_listeners(mesh.app.address, identity(ca, "gateway"))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    other_ca = LocalCA(ca.dir.parent / "other")
    with pytest.raises(grpc.aio.AioRpcError) as info:  # "envoy" signed by another CA
        await first_listeners(mesh.app.address, identity(other_ca, "envoy"))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert [n.node_id for n in mesh.app.status.all()] == [mesh.envoy.node_id]  # no probe was ever served
    # The envoy identity itself is served (the refusals above are about the caller, not the stream).
    response = await first_listeners(mesh.app.address, identity(ca, "envoy"))
    assert response.type_url == LISTENER and len(response.resources) == 1


async def test_envoy_rereads_a_rotated_xds_certificate(backends: list[Backend], tmp_path: Path) -> None:
    """The mesh moves to a new CA: the control plane comes back trusting only it; Envoy, unrestarted,
    reconnects once its certificate files (a mounted Secret) are replaced."""
    old_ca, new_ca = LocalCA(tmp_path / "old"), LocalCA(tmp_path / "new")
    listener_port = free_port()
    config = mesh_config_for(backends, listener_port)

    async def control_plane(ca: LocalCA, port: int = 0) -> ControlPlaneApp:
        own = identity(ca, "controlplane")
        settings = ControlPlaneSettings(
            port=port, admin_port=0, grace_s=0.1, tls_cert_path=own.cert, tls_key_path=own.key, tls_ca_path=own.ca
        )
        app = ControlPlaneApp(settings, config=config)
        await app.start()
        return app

    app = await control_plane(old_ca)
    envoy = EnvoyProcess(
        app.address, workdir=tmp_path / "envoy", xds_tls=install(identity(old_ca, "envoy"), tmp_path / "mounted")
    )
    try:
        await asyncio.to_thread(envoy.start)
        pid = envoy.pid
        await app.stop()
        app = await control_plane(new_ca, port=int(envoy.xds_address.rsplit(":", 1)[1]))
        install(identity(new_ca, "envoy"), tmp_path / "mounted")
        await eventually(lambda: app.status.all(), within_s=30, what="Envoy reconnected with the new certificate")
        assert [n.node_id for n in app.status.all()] == [envoy.node_id]
        assert envoy.pid == pid  # no restart
        assert await predict(f"127.0.0.1:{listener_port}") in (["a"], ["b"])
    finally:
        await asyncio.to_thread(envoy.stop)
        await app.stop()


async def test_envoy_calls_only_an_upstream_with_the_gateway_identity(tmp_path: Path) -> None:
    """Envoy -> gateway over mTLS: a replica presenting another mesh identity gets no traffic."""
    ca = LocalCA(tmp_path / "pki")
    gateway = await Backend("gateway", tls=identity(ca, "gateway")).start()
    impostor = await Backend("impostor", tls=identity(ca, "features")).start()
    listener_port = free_port()
    config = mesh_config_for([gateway, impostor], listener_port)
    config = config.model_copy(
        update={"clusters": {n: c.model_copy(update={"mtls": True}) for n, c in config.clusters.items()}}
    )
    own, envoy_files = identity(ca, "controlplane"), identity(ca, "envoy")
    settings = ControlPlaneSettings(
        port=0,
        admin_port=0,
        grace_s=0.1,
        tls_cert_path=own.cert,
        tls_key_path=own.key,
        tls_ca_path=own.ca,
        upstream_tls_cert_path=envoy_files.cert,
        upstream_tls_key_path=envoy_files.key,
        upstream_tls_ca_path=envoy_files.ca,
    )
    app = ControlPlaneApp(settings, config=config)
    await app.start()
    envoy = EnvoyProcess(app.address, workdir=tmp_path / "envoy", xds_tls=envoy_files)
    try:
        await asyncio.to_thread(envoy.start)
        edge = f"127.0.0.1:{listener_port}"
        served: list[str] = []

        async def some_served() -> None:
            served.extend(await predict(edge, n=10))

        deadline = asyncio.get_running_loop().time() + 15
        while not served:
            try:
                await some_served()
            except grpc.aio.AioRpcError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.1)
        assert set(served) == {"gateway"}
        assert impostor.calls == 0 and gateway.calls >= 10
    finally:
        await asyncio.to_thread(envoy.stop)
        await app.stop()
        await gateway.stop()
        await impostor.stop()
