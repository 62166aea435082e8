"""ControlPlaneApp through its public surfaces: settings, config file, admin API, tracing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
import yaml

from predmesh.common.grpcserver import GrpcServer
from predmesh.common.settings import ServerSettings
from services.controlplane.app import ControlPlaneApp, config_from_settings
from services.controlplane.core.config import Endpoint
from services.controlplane.settings import ControlPlaneSettings
from services.controlplane.transport.admin import AdminClient
from tests.common.lifecycle_support import assert_failed_start_leaks_nothing
from tests.controlplane.conftest import Mesh, eventually


def test_settings_from_env_build_the_default_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREDMESH_CONTROLPLANE_GATEWAY_ENDPOINTS", "10.0.0.1:50051, 10.0.0.2:50051")
    monkeypatch.setenv("PREDMESH_CONTROLPLANE_LISTENER_PORT", "8443")
    monkeypatch.setenv("PREDMESH_CONTROLPLANE_OTLP_COLLECTOR", "otel:4317")
    config = config_from_settings(ControlPlaneSettings())
    assert config.listener_port == 8443
    assert config.clusters["gateway"].endpoints == (
        Endpoint(host="10.0.0.1", port=50051),
        Endpoint(host="10.0.0.2", port=50051),
    )
    assert config.tracing.collector == "otel:4317"


async def test_config_file_changes_are_published(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    data = {"clusters": {"gateway": {"endpoints": [{"host": "10.0.0.1", "port": 1}]}}, "routes": []}
    path.write_text(yaml.safe_dump(data))
    app = ControlPlaneApp(ControlPlaneSettings(port=0, admin_port=0, config_path=path, config_poll_s=0.02))
    await app.start()
    try:
        first = app.version
        data["clusters"]["gateway"]["endpoints"] = [{"host": "10.0.0.2", "port": 2}]  # type: ignore[index]
        path.write_text(yaml.safe_dump(data))
        await eventually(lambda: app.version != first, within_s=5, what="file reload")
        assert app.publisher.endpoints()["gateway"] == (Endpoint(host="10.0.0.2", port=2),)

        good = app.version
        path.write_text("rate_limit: {max_tokens: -5}\n")  # invalid: logged, old version kept
        await asyncio.sleep(0.2)
        assert app.version == good
    finally:
        await app.stop()


async def test_admin_api_rejects_bad_configs_and_keeps_the_version() -> None:
    app = ControlPlaneApp(ControlPlaneSettings(port=0, admin_port=0, gateway_endpoints="127.0.0.1:1"))
    await app.start()
    try:
        async with AdminClient(app.admin_address) as admin:
            version = (await admin.get_config())["version"]
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await admin.patch_config({"routes": [{"name": "r", "prefix": "/", "cluster": "missing"}]})
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await admin.set_config({"listener_port": "not a port"})
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert (await admin.get_config())["version"] == version
            new = await admin.patch_config({"rate_limit": {"max_tokens": 7}})
            assert new != version and app.publisher.config.rate_limit.max_tokens == 7
    finally:
        await app.stop()


class FakeCollector:
    """Counts OTLP/gRPC trace exports (payload kept as bytes; no OTel protos needed)."""

    def __init__(self) -> None:
        self.exports: list[bytes] = []
        self.server = GrpcServer(ServerSettings(port=0, grace_s=0))

        async def export(request: bytes, context: object) -> bytes:
            self.exports.append(request)
            return b""  # an empty ExportTraceServiceResponse

        handler = grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService",
            {"Export": grpc.unary_unary_rpc_method_handler(export)},
        )
        self.server.add_servicer(lambda _s, server: server.add_generic_rpc_handlers((handler,)), None, "otlp")


async def test_tracing_switched_on_live_exports_spans_to_the_collector(mesh: Mesh) -> None:
    from tests.controlplane.test_envoy_integration import predict

    collector = FakeCollector()
    port = await collector.server.start()
    try:
        snapshot = await mesh.app.patch_config({"tracing": {"collector": f"127.0.0.1:{port}"}})
        await eventually(lambda: mesh.envoy.versions().get("listeners") == snapshot.version, what="tracing ACK")
        await asyncio.sleep(0.2)  # the new listener replaces the old one
        await predict(mesh.edge, 12)
        await eventually(lambda: collector.exports, within_s=10, what="an OTLP export from Envoy")
        assert b"predmesh-edge" in b"".join(collector.exports)  # the service.name resource attribute
    finally:
        await collector.server.stop(0)


async def test_failed_start_cancels_the_config_watcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(yaml.safe_dump({"clusters": {"gateway": {"endpoints": [{"host": "10.0.0.1", "port": 1}]}}}))
    app = ControlPlaneApp(ControlPlaneSettings(port=0, grace_s=0.1, config_path=path, config_poll_s=0.02))
    await assert_failed_start_leaks_nothing(app, monkeypatch)
