"""A real Envoy, configured only through our ADS control plane, in front of test replicas."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import grpc
import pytest

from predmesh.v1 import prediction_pb2, prediction_pb2_grpc
from services.controlplane.core.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE
from services.controlplane.transport.admin import AdminClient
from tests.controlplane.conftest import Mesh, eventually

pytestmark = pytest.mark.timeout(60)


async def predict(edge: str, n: int = 1, deadline_s: float = 2.0) -> list[str]:
    """Call Predict `n` times through the edge; the serving replica's name per call."""
    async with grpc.aio.insecure_channel(edge) as channel:
        stub = prediction_pb2_grpc.PredictionServiceStub(channel)
        served = []
        for i in range(n):
            resp = await stub.Predict(
                prediction_pb2.PredictRequest(model="fraud", entity_id=f"u{i}"), timeout=deadline_s
            )
            served.append(resp.model_version)
        return served


def acked_everything(mesh: Mesh) -> bool:
    snapshot = mesh.app.publisher.snapshot
    node = mesh.app.status.get(mesh.envoy.node_id)
    return bool(snapshot and node and all(node.acked.get(t) == snapshot.type_version(t) for t in snapshot.versions))


async def test_envoy_converges_and_proxies_grpc(mesh: Mesh) -> None:
    await eventually(lambda: acked_everything(mesh), what="ACK of every resource type")
    versions = mesh.envoy.versions()
    snapshot = mesh.app.publisher.snapshot
    assert snapshot is not None
    assert versions["listeners"] == snapshot.type_version(LISTENER)
    assert versions["clusters"] == snapshot.type_version(CLUSTER)
    assert versions["routes"] == snapshot.type_version(ROUTE)
    hosts = mesh.envoy.cluster_hosts("gateway")
    assert set(hosts) == {b.endpoint.address for b in mesh.backends}

    served = await predict(mesh.edge, 10)
    assert set(served) == {"a", "b"}  # round robin over both replicas


async def test_endpoint_change_pushed_live_through_admin_api(mesh: Mesh) -> None:
    a, b = mesh.backends
    pid = mesh.envoy.pid
    async with AdminClient(mesh.app.admin_address) as admin:
        before = await admin.get_config()
        listener_version = mesh.app.publisher.snapshot.type_version(LISTENER)  # type: ignore[union-attr]
        version = await admin.patch_config(
            {"clusters": {"gateway": {"endpoints": [{"host": b.endpoint.host, "port": b.endpoint.port}]}}}
        )
        assert version != before["version"]
        await eventually(lambda: set(mesh.envoy.cluster_hosts("gateway")) == {b.endpoint.address}, what="EDS push")
        assert set(await predict(mesh.edge, 6)) == {"b"}

        await admin.patch_config(
            {"clusters": {"gateway": {"endpoints": [{"host": a.endpoint.host, "port": a.endpoint.port}]}}}
        )
        await eventually(lambda: set(mesh.envoy.cluster_hosts("gateway")) == {a.endpoint.address}, what="EDS push")
        assert set(await predict(mesh.edge, 6)) == {"a"}
        status = await admin.get_status()

    assert mesh.envoy.pid == pid  # same process: no restart
    snapshot = mesh.app.publisher.snapshot
    assert snapshot is not None
    assert snapshot.type_version(LISTENER) == listener_version  # only EDS changed
    assert snapshot.type_version(ENDPOINT) == snapshot.version
    node = next(n for n in status["nodes"] if n["id"] == mesh.envoy.node_id)
    assert node["connected"] is True


async def test_local_rate_limit_gives_resource_exhausted(mesh: Mesh) -> None:
    await mesh.app.patch_config({"rate_limit": {"max_tokens": 2, "tokens_per_fill": 2, "fill_interval_ms": 60000}})
    await eventually(lambda: acked_everything(mesh), what="rate limit pushed")
    codes = []
    async with grpc.aio.insecure_channel(mesh.edge) as channel:
        stub = prediction_pb2_grpc.PredictionServiceStub(channel)
        for _ in range(6):
            try:
                await stub.Predict(prediction_pb2.PredictRequest(model="fraud"), timeout=2)
                codes.append(grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as err:
                codes.append(err.code())
    assert codes[:2] == [grpc.StatusCode.OK] * 2
    assert codes[2:] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 4
    stats = mesh.envoy.stats("rate")
    assert stats["edge_rate_limit.http_local_rate_limit.rate_limited"] == 4

    # lifted again live
    await mesh.app.patch_config({"rate_limit": {"enabled": False}})
    await eventually(lambda: acked_everything(mesh), what="rate limit removed")
    assert len(await predict(mesh.edge, 5)) == 5


async def test_rejected_update_is_nacked_and_last_good_version_kept(mesh: Mesh) -> None:
    from envoy.config.route.v3 import route_pb2
    from google.protobuf import json_format

    from services.controlplane.core.snapshot import Snapshot

    await eventually(lambda: acked_everything(mesh), what="initial ACK")
    good = mesh.app.publisher.snapshot
    assert good is not None
    # A route config Envoy refuses: an invalid RE2 regex (our consistency check cannot see that).
    bad_routes = json_format.ParseDict(
        {
            "name": "edge",
            "virtual_hosts": [
                {
                    "name": "edge",
                    "domains": ["*"],
                    "routes": [{"match": {"safe_regex": {"regex": "(unclosed"}}, "route": {"cluster": "gateway"}}],
                }
            ],
        },
        route_pb2.RouteConfiguration(),
    )
    resources = {t: list(good.resources[t].values()) for t in good.resources}
    resources[ROUTE] = [bad_routes]
    bad = Snapshot.build("bad-1", resources, previous=good)
    mesh.app.cache.set_snapshot(mesh.app.settings.node_cluster, bad)

    def nacked() -> bool:
        node = mesh.app.status.get(mesh.envoy.node_id)
        return bool(node and node.last_nack and node.last_nack.version == "bad-1")

    await eventually(nacked, what="NACK of the bad route config")
    node = mesh.app.status.get(mesh.envoy.node_id)
    assert node is not None and node.last_nack is not None
    assert node.last_nack.type_url == ROUTE
    assert "regex" in node.last_nack.message.lower() or "(unclosed" in node.last_nack.message
    assert node.acked[ROUTE] == good.type_version(ROUTE)
    assert mesh.envoy.versions()["routes"] == good.type_version(ROUTE)
    assert len(await predict(mesh.edge, 4)) == 4  # traffic keeps flowing on the last good config

    # The next good update is accepted (the stream is not stuck on the NACK).
    fixed = await mesh.app.patch_config({"rate_limit": {"max_tokens": 500}})
    await eventually(lambda: mesh.envoy.versions().get("routes") == fixed.type_version(ROUTE), what="recovery")
    assert len(await predict(mesh.edge, 2)) == 2


def _post_json(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=5) as resp:  # urllib speaks HTTP/1.1
        return resp.status, json.loads(resp.read())


async def test_json_transcoding_over_http1(mesh: Mesh) -> None:
    await eventually(lambda: acked_everything(mesh), what="initial ACK")
    base = f"http://{mesh.edge}"
    status, body = await asyncio.to_thread(
        _post_json, f"{base}/v1/predict", {"model": "fraud", "entity_id": "u42", "request_id": "r-1"}
    )
    assert status == 200
    assert body["request_id"] == "r-1"
    assert body["entity_id"] == "u42"
    assert body["model_version"] in {"a", "b"}

    status, body = await asyncio.to_thread(
        _post_json, f"{base}/predmesh.v1.PredictionService/Predict", {"model": "fraud", "entity_id": "u7"}
    )
    assert status == 200 and body["entity_id"] == "u7"

    status, body = await asyncio.to_thread(
        _post_json,
        f"{base}/v1/predict:batch",
        {"model": "fraud", "items": [{"entity_id": "x"}, {"entity_id": "y"}]},
    )
    assert status == 200
    assert [r["entity_id"] for r in body["results"]] == ["x", "y"]


def _get_json(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, {}


async def test_polling_is_a_get_through_json_transcoding(mesh: Mesh) -> None:
    await eventually(lambda: acked_everything(mesh), what="initial ACK")
    status, body = await asyncio.to_thread(_get_json, f"http://{mesh.edge}/v1/predictions/r-77")
    assert status == 200
    assert body["request_id"] == "r-77" and body["state"] == "PREDICTION_STATE_DONE"
    assert body["response"]["request_id"] == "r-77"
    status, _ = await asyncio.to_thread(_get_json, f"http://{mesh.edge}/v1/predictions/missing")
    assert status == 404


async def test_killed_replica_traffic_moves_to_the_other(mesh: Mesh) -> None:
    a = mesh.backends[0]
    assert set(await predict(mesh.edge, 6)) == {"a", "b"}
    await a.stop()
    served = await predict(mesh.edge, 10)  # retries on reset/connect-failure hide the dead replica
    assert set(served) == {"b"}

    def a_marked_unhealthy() -> bool:
        health = mesh.envoy.cluster_hosts("gateway")[a.endpoint.address]
        return bool(health.get("failed_active_health_check") or health.get("failed_outlier_check"))

    await eventually(a_marked_unhealthy, what="dead replica marked unhealthy")
    assert set(await predict(mesh.edge, 5)) == {"b"}


async def test_config_update_envoy_rejects_is_rolled_back_to_last_good(mesh: Mesh) -> None:
    await eventually(lambda: acked_everything(mesh), what="initial ACK")
    good_config = mesh.app.publisher.config
    # Passes our validation, but EDS needs IP addresses: Envoy NACKs the ClusterLoadAssignment.
    bad = await mesh.app.patch_config({"clusters": {"gateway": {"endpoints": [{"host": "gateway.local", "port": 1}]}}})

    def rolled_back() -> bool:
        node = mesh.app.status.get(mesh.envoy.node_id)
        return bool(
            node and node.last_nack and node.last_nack.version == bad.version and mesh.app.version != bad.version
        )

    await eventually(rolled_back, what="NACK and rollback")
    node = mesh.app.status.get(mesh.envoy.node_id)
    assert node is not None and node.last_nack is not None and node.last_nack.type_url == ENDPOINT
    assert "gateway.local" in node.last_nack.message
    assert mesh.app.publisher.config == good_config
    await eventually(lambda: acked_everything(mesh), what="ACK of the rolled-back version")
    assert set(mesh.envoy.cluster_hosts("gateway")) == {b.endpoint.address for b in mesh.backends}
    assert set(await predict(mesh.edge, 6)) == {"a", "b"}
