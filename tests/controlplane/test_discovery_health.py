"""Endpoint discovery is retried with back-off, and the control plane is NOT_SERVING while a routed
cluster has no endpoints (e.g. Kubernetes discovery without the `kubernetes` package, or before it works)."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.controlplane.app import ControlPlaneApp
from services.controlplane.core.config import Endpoint, KubernetesDiscovery, MeshConfig
from services.controlplane.core.endpoints import KubernetesEndpointSource
from services.controlplane.settings import ControlPlaneSettings
from tests.controlplane.conftest import eventually

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        return int(health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2).status)


@pytest.mark.skipif(importlib.util.find_spec("kubernetes") is not None, reason="needs the package to be absent")
async def test_a_routed_cluster_without_endpoints_is_not_serving_until_it_gets_some() -> None:
    config = MeshConfig.parse(
        {
            "clusters": {"gateway": {"kubernetes": {"namespace": "predmesh", "service": "gateway"}}},
            "routes": [{"name": "prediction", "prefix": "/predmesh.v1.PredictionService/", "cluster": "gateway"}],
        }
    )
    app = ControlPlaneApp(ControlPlaneSettings(port=0), config=config)
    await app.start()
    try:
        # No `kubernetes` package here: discovery keeps retrying, the gateway cluster stays empty.
        assert app.publisher.empty_routed_clusters() == ["gateway"]
        await eventually(lambda: _health(app.address) == NOT_SERVING, 5, "NOT_SERVING while gateway has no hosts")
        app.set_endpoints("gateway", [Endpoint(host="127.0.0.1", port=50051)])
        await eventually(lambda: _health(app.address) == SERVING, 5, "SERVING once it has endpoints")
    finally:
        await app.stop()


class _FakeDiscoveryApi:
    """`list_namespaced_endpoint_slice` of the DiscoveryV1Api shape, with one ready endpoint."""

    def list_namespaced_endpoint_slice(self, namespace: str, label_selector: str, **kw: Any) -> Any:
        slc = SimpleNamespace(
            address_type="IPv4",
            metadata=SimpleNamespace(name="gateway-abc"),
            ports=[SimpleNamespace(name="grpc", port=50051)],
            endpoints=[SimpleNamespace(addresses=["10.1.2.3"], conditions=SimpleNamespace(ready=True))],
        )
        return SimpleNamespace(items=[slc], metadata=SimpleNamespace(resource_version="1"))


async def test_discovery_retries_with_backoff_until_the_api_client_can_be_built() -> None:
    attempts: list[int] = []
    ready = threading.Event()

    def factory() -> _FakeDiscoveryApi:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("no in-cluster config yet")
        ready.set()
        return _FakeDiscoveryApi()

    got: list[tuple[str, tuple[Endpoint, ...]]] = []
    source = KubernetesEndpointSource(
        "gateway",
        KubernetesDiscovery(namespace="predmesh", service="gateway", port_name="grpc"),
        api_factory=factory,
        retry_s=0.05,
        retry_max_s=0.2,
    )
    await source.start(lambda cluster, eps: got.append((cluster, eps)))  # never raises
    try:
        await eventually(lambda: bool(got), 5, "endpoints reported after the retries")
        assert len(attempts) == 3
        assert got[0] == ("gateway", (Endpoint(host="10.1.2.3", port=50051),))
    finally:
        await source.stop()
    await asyncio.sleep(0)
