"""RPC metrics and the /metrics endpoint of GrpcServer, scraped over HTTP from real servers."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator

import grpc
import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from predmesh.common import errors
from predmesh.common.grpcserver import GrpcServer
from predmesh.common.settings import ServerSettings

SERVICE = "test.Metered"


async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    if request == b"missing":
        raise errors.NotFound("no")
    if request == b"boom":
        raise RuntimeError("boom")
    return request


def _register(_: object, server: grpc.aio.Server) -> None:
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Call": grpc.unary_unary_rpc_method_handler(unary)}),)
    )


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


@pytest.fixture
async def servers() -> AsyncIterator[tuple[GrpcServer, GrpcServer]]:
    """Two servers in one process: separate registries, separate endpoints, no collisions."""
    own = CollectorRegistry()
    Counter("app_things", "A service's own metric.", registry=own).inc(3)
    a = GrpcServer(ServerSettings(port=0, grace_s=0.1, metrics_port=0), registry=own)
    b = GrpcServer(ServerSettings(port=0, grace_s=0.1, metrics_port=0))
    for srv in (a, b):
        srv.add_servicer(_register, None, SERVICE)
        await srv.start()
    yield a, b
    await a.stop()
    await b.stop()


async def test_counts_by_method_and_code_and_latency(servers: tuple[GrpcServer, GrpcServer]) -> None:
    a, b = servers
    assert a.metrics_port and b.metrics_port and a.metrics_port != b.metrics_port
    async with grpc.aio.insecure_channel(a.address) as channel:
        call = channel.unary_unary(f"/{SERVICE}/Call")
        for payload in (b"1", b"2", b"missing", b"boom"):
            try:
                await call(payload, timeout=5)
            except grpc.aio.AioRpcError:
                pass
    got = await asyncio.to_thread(scrape, a.metrics_port)
    labels = (("grpc_method", "Call"), ("grpc_service", SERVICE))

    def handled(code: str) -> float:
        return got[("predmesh_grpc_server_handled_total", tuple(sorted((*labels, ("grpc_code", code)))))]

    assert handled("OK") == 2
    assert handled("NOT_FOUND") == 1
    assert handled("INTERNAL") == 1
    assert got[("predmesh_grpc_server_started_total", labels)] == 4
    assert got[("predmesh_grpc_server_handling_seconds_count", labels)] == 4
    assert got[("predmesh_grpc_server_in_flight", labels)] == 0
    assert got[("app_things_total", ())] == 3  # the service's own registry is on the same endpoint
    other = await asyncio.to_thread(scrape, b.metrics_port)
    assert ("predmesh_grpc_server_started_total", labels) not in other
    assert ("app_things_total", ()) not in other


async def test_metrics_endpoint_off_by_default() -> None:
    srv = GrpcServer(ServerSettings(port=0, grace_s=0.1))
    await srv.start()
    try:
        assert srv.metrics_port == 0
    finally:
        await srv.stop()


def test_a_count_read_at_scrape_time_is_a_counter_with_the_current_value() -> None:
    import contextlib

    from prometheus_client import CollectorRegistry, generate_latest

    from predmesh.common.metrics import expose_count

    class Writer:
        fallbacks = 0

    writer = Writer()
    registry = CollectorRegistry()
    stack = contextlib.ExitStack()
    expose_count(stack, registry, "predmesh_test_fallbacks", "Batches sent the slow way.", lambda: writer.fallbacks)
    assert registry.get_sample_value("predmesh_test_fallbacks_total") == 0.0
    writer.fallbacks = 3
    assert registry.get_sample_value("predmesh_test_fallbacks_total") == 3.0
    text = generate_latest(registry).decode()
    assert "# TYPE predmesh_test_fallbacks_total counter" in text and "predmesh_test_fallbacks_total 3.0" in text


def test_a_read_at_scrape_gauge_can_be_exposed_again_after_its_owner_unregistered_it() -> None:
    """Unregistered when the app's exit stack closes at stop, so a restarted app exposes the same names again."""
    import contextlib

    from prometheus_client import CollectorRegistry

    from predmesh.common.metrics import expose_gauge

    registry = CollectorRegistry()
    backlog: list[bytes] = [b"a", b"b"]
    for _ in range(2):  # start, stop, start again
        with contextlib.ExitStack() as stack:
            expose_gauge(stack, registry, "predmesh_test_pending", "Records pending.", backlog.__len__)
            assert registry.get_sample_value("predmesh_test_pending") == 2.0
        assert registry.get_sample_value("predmesh_test_pending") is None
