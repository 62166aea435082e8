"""Endpoint sources: the static list and the Kubernetes EndpointSlice translation."""

from __future__ import annotations

from types import SimpleNamespace as NS

from services.controlplane.core.config import Endpoint
from services.controlplane.core.endpoints import StaticEndpointSource, endpoints_from_slices


def slice_(endpoints: list[NS], ports: list[NS], address_type: str = "IPv4") -> NS:
    return NS(address_type=address_type, ports=ports, endpoints=endpoints, metadata=NS(name="s"))


def ep(*addresses: str, ready: bool | None = True) -> NS:
    return NS(addresses=list(addresses), conditions=NS(ready=ready))


async def test_static_source_reports_once() -> None:
    seen: list[tuple[str, tuple[Endpoint, ...]]] = []
    source = StaticEndpointSource("gateway", [Endpoint(host="10.0.0.1", port=1)])
    await source.start(lambda cluster, eps: seen.append((cluster, eps)))
    await source.stop()
    assert seen == [("gateway", (Endpoint(host="10.0.0.1", port=1),))]


def test_slices_translate_to_ready_endpoints_on_the_named_port() -> None:
    ports = [NS(name="metrics", port=9090), NS(name="grpc", port=50051)]
    slices = [
        slice_([ep("10.0.0.2"), ep("10.0.0.1"), ep("10.0.0.9", ready=False)], ports),
        slice_([ep("10.0.1.5", ready=None)], ports),  # unset ready counts as ready
        slice_([ep("gateway.example.com")], ports, address_type="FQDN"),  # EDS needs IPs
    ]
    assert endpoints_from_slices(slices, "grpc") == (
        Endpoint(host="10.0.0.1", port=50051),
        Endpoint(host="10.0.0.2", port=50051),
        Endpoint(host="10.0.1.5", port=50051),
    )
    assert endpoints_from_slices(slices[:1], None)[0].port == 9090  # first port by default
    assert endpoints_from_slices(slices, "missing") == ()
    assert endpoints_from_slices([slice_([], ports)], "grpc") == ()
    assert endpoints_from_slices([NS(address_type="IPv4", ports=ports, endpoints=None)], "grpc") == ()
