"""Envoy edge hardening, read back from the configuration a real Envoy runs (admin /config_dump).

Each item of Envoy's edge-proxy guidance the control plane renders (listener, HTTP connection
manager, routes, clusters) or the bootstrap sets (overload manager) is asserted on what Envoy
accepted, not on what we meant to send; two are also exercised (underscore headers, the
downstream connection cap).
"""

from __future__ import annotations

import asyncio
import http.client
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from predmesh.local.envoy import EdgeLimits, EnvoyProcess
from predmesh.local.procs import free_port
from services.controlplane.app import ControlPlaneApp
from services.controlplane.settings import ControlPlaneSettings
from tests.controlplane.backend import Backend
from tests.controlplane.conftest import Mesh, eventually, mesh_config_for
from tests.controlplane.test_envoy_integration import predict

pytestmark = pytest.mark.timeout(60)


def section(dump: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in dump["configs"] if c["@type"].rsplit(".", 1)[-1] == kind)


def typed(filters: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(f["typed_config"] for f in filters if f["name"] == name)


async def test_envoy_runs_every_edge_hardening_item(mesh: Mesh) -> None:
    dump = await asyncio.to_thread(mesh.envoy.config_dump)

    overload = section(dump, "BootstrapConfigDump")["bootstrap"]["overload_manager"]
    monitors = {m["name"]: m["typed_config"] for m in overload["resource_monitors"]}
    assert monitors["envoy.resource_monitors.fixed_heap"]["max_heap_size_bytes"] == str(1 << 30)
    connections = monitors["envoy.resource_monitors.global_downstream_max_connections"]
    assert connections["max_active_downstream_connections"] == "50000"
    actions = {a["name"]: a["triggers"][0]["threshold"]["value"] for a in overload["actions"]}
    assert actions == {
        "envoy.overload_actions.shrink_heap": 0.95,
        "envoy.overload_actions.stop_accepting_requests": 0.98,
    }

    listener = section(dump, "ListenersConfigDump")["dynamic_listeners"][0]["active_state"]["listener"]
    assert listener["per_connection_buffer_limit_bytes"] == 32768
    hcm = typed(listener["filter_chains"][0]["filters"], "envoy.filters.network.http_connection_manager")
    assert hcm["use_remote_address"] is True
    assert hcm["normalize_path"] is True and hcm["merge_slashes"] is True
    assert hcm["path_with_escaped_slashes_action"] == "UNESCAPE_AND_REDIRECT"
    assert hcm["common_http_protocol_options"]["headers_with_underscores_action"] == "REJECT_REQUEST"
    h2 = hcm["http2_protocol_options"]
    assert (h2["max_concurrent_streams"], h2["initial_stream_window_size"], h2["initial_connection_window_size"]) == (
        100,
        65536,
        1048576,
    )
    assert (hcm["stream_idle_timeout"], hcm["request_timeout"], hcm["request_headers_timeout"]) == (
        "300s",
        "60s",
        "10s",
    )
    assert [a["name"] for a in hcm["access_log"]] == ["envoy.access_loggers.stdout"]
    transcoder = typed(hcm["http_filters"], "envoy.filters.http.grpc_json_transcoder")
    assert transcoder["max_request_body_size"] == 1048576

    routes = section(dump, "RoutesConfigDump")["dynamic_route_configs"][0]["route_config"]
    for route in routes["virtual_hosts"][0]["routes"]:
        assert route["route"]["max_stream_duration"]["grpc_timeout_header_max"] == "30s"

    clusters = section(dump, "ClustersConfigDump")["dynamic_active_clusters"]
    assert clusters
    for entry in clusters:
        cluster = entry["cluster"]
        assert cluster["per_connection_buffer_limit_bytes"] == 32768
        budget = cluster["circuit_breakers"]["thresholds"][0]["retry_budget"]
        assert budget["budget_percent"]["value"] == 20


async def test_headers_with_underscores_are_rejected(mesh: Mesh) -> None:
    assert await predict(mesh.edge) in (["a"], ["b"])

    def post(headers: dict[str, str]) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", mesh.listener_port, timeout=3)
        try:
            conn.request("POST", "/v1/predict", body=b"{}", headers={"content-type": "application/json", **headers})
            return conn.getresponse().status
        finally:
            conn.close()

    assert await asyncio.to_thread(post, {"x_smuggled": "1"}) == 400
    rejected = await asyncio.to_thread(mesh.envoy.stats, "requests_rejected_with_underscores_in_headers")
    assert sum(rejected.values()) >= 1


@pytest.fixture
async def capped(backends: list[Backend], tmp_path: Path) -> AsyncIterator[Mesh]:
    """An edge Envoy whose overload manager allows two downstream connections."""
    listener_port = free_port()
    app = ControlPlaneApp(
        ControlPlaneSettings(port=0, admin_port=0, grace_s=0.1), config=mesh_config_for(backends, listener_port)
    )
    await app.start()
    envoy = EnvoyProcess(app.address, workdir=tmp_path / "envoy", limits=EdgeLimits(max_downstream_connections=2))
    try:
        await asyncio.to_thread(envoy.start)
        yield Mesh(app, envoy, listener_port, backends)
    finally:
        await asyncio.to_thread(envoy.stop)
        await app.stop()


async def test_downstream_connection_cap_closes_the_extra_connection(capped: Mesh) -> None:
    def closed_by_peer(sock: socket.socket) -> bool:
        sock.settimeout(0.2)
        try:
            return sock.recv(1) == b""
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True

    held = [socket.create_connection(("127.0.0.1", capped.listener_port), timeout=3) for _ in range(2)]
    try:
        # Envoy counts a connection once a worker accepted it; wait until it holds both.
        active = "http.edge.downstream_cx_active"
        await eventually(lambda: capped.envoy.stats(active).get(active) == 2, what="two active downstream connections")
        extra = socket.create_connection(("127.0.0.1", capped.listener_port), timeout=3)
        try:
            await eventually(lambda: closed_by_peer(extra), what="the third connection closed by Envoy")
        finally:
            extra.close()
        overflow = await asyncio.to_thread(capped.envoy.stats, "downstream_global_cx_overflow")
        assert sum(overflow.values()) >= 1
        assert not await asyncio.to_thread(closed_by_peer, held[0])  # the first two stay open
    finally:
        for sock in held:
            sock.close()
