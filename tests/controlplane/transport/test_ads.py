"""ADS servicer protocol logic (nonce / version / ACK / NACK) against a fake Envoy stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from services.controlplane.core.cache import SnapshotCache
from services.controlplane.core.config import Endpoint, default_config
from services.controlplane.core.resources import build_resources
from services.controlplane.core.snapshot import CLUSTER, ENDPOINT, LISTENER, Snapshot
from services.controlplane.core.status import StatusRegistry
from services.controlplane.transport.ads import AdsServicer

NODE = base_pb2.Node(id="envoy-1", cluster="predmesh-edge")


def snap(version: str, port: int, previous: Snapshot | None = None) -> Snapshot:
    return Snapshot.build(version, build_resources(default_config([Endpoint(host="127.0.0.1", port=port)])), previous)


class FakeEnvoy:
    """Feeds DiscoveryRequests into the servicer and collects its DiscoveryResponses."""

    def __init__(self, servicer: AdsServicer) -> None:
        self.requests: asyncio.Queue[Any] = asyncio.Queue()
        self.responses: asyncio.Queue[Any] = asyncio.Queue()
        self._task = asyncio.create_task(self._pump(servicer))

    async def _iter(self) -> AsyncIterator[Any]:
        while (req := await self.requests.get()) is not None:
            yield req

    async def _pump(self, servicer: AdsServicer) -> None:
        async for resp in servicer.StreamAggregatedResources(self._iter(), None):
            self.responses.put_nowait(resp)

    def send(
        self, type_url: str, version: str = "", nonce: str = "", names: tuple[str, ...] = (), error: str = ""
    ) -> None:
        req = discovery_pb2.DiscoveryRequest(
            type_url=type_url, version_info=version, response_nonce=nonce, resource_names=list(names)
        )
        if not nonce:
            req.node.CopyFrom(NODE)
        if error:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        self.requests.put_nowait(req)

    async def receive(self) -> Any:
        return await asyncio.wait_for(self.responses.get(), 1.0)

    async def nothing_received(self) -> bool:
        """True when the requests sent so far produced no response (no sleep: a barrier).

        The servicer handles one stream's requests in order, so a probe sent now (a fresh
        LDS request, always answered at once) is answered only after everything before it
        was handled; a response to an earlier request would arrive before the probe's.
        """
        self.send(LISTENER)
        first = await self.receive()
        return bool(first.type_url == LISTENER and self.responses.empty())

    async def close(self) -> None:
        self.requests.put_nowait(None)
        await asyncio.wait_for(self._task, 1.0)


async def test_version_nonce_ack_nack_sequence() -> None:
    cache, status = SnapshotCache(), StatusRegistry()
    v1 = snap("1", 5001)
    cache.set_snapshot("predmesh-edge", v1)
    envoy = FakeEnvoy(AdsServicer(cache, status))

    envoy.send(CLUSTER)
    cds = await envoy.receive()
    assert (cds.type_url, cds.version_info, len(cds.resources)) == (CLUSTER, "1", 1)
    envoy.send(CLUSTER, version="1", nonce=cds.nonce)  # ACK
    envoy.send(ENDPOINT, names=("gateway",))
    eds = await envoy.receive()
    assert eds.version_info == "1" and eds.nonce != cds.nonce
    envoy.send(ENDPOINT, version="1", nonce=eds.nonce, names=("gateway",))  # ACK
    assert await envoy.nothing_received()
    node = status.get("envoy-1")
    assert node is not None and node.acked == {CLUSTER: "1", ENDPOINT: "1"}

    # Only EDS changed: only EDS is pushed.
    v2 = snap("2", 5002, previous=v1)
    cache.set_snapshot("predmesh-edge", v2)
    eds2 = await envoy.receive()
    assert (eds2.type_url, eds2.version_info) == (ENDPOINT, "2")
    assert await envoy.nothing_received()

    # NACK: recorded, version 2 is not re-sent, Envoy stays on 1.
    envoy.send(ENDPOINT, version="1", nonce=eds2.nonce, names=("gateway",), error="bad endpoint")
    assert await envoy.nothing_received()
    assert node.last_nack is not None and (node.last_nack.version, node.last_nack.message) == (
        "2",
        "bad endpoint",
    )
    assert node.acked[ENDPOINT] == "1"

    # A stale nonce is ignored, whatever it asks for.
    envoy.send(ENDPOINT, version="1", nonce="stale", names=("gateway", "other"))
    assert await envoy.nothing_received()

    # The next version goes out after a NACK.
    cache.set_snapshot("predmesh-edge", snap("3", 5003, previous=v2))
    eds3 = await envoy.receive()
    assert eds3.version_info == "3"

    # ACK with a changed set of names: answered at once, same version.
    envoy.send(ENDPOINT, version="3", nonce=eds3.nonce, names=("gateway", "other"))
    eds3b = await envoy.receive()
    assert eds3b.version_info == "3" and eds3b.nonce != eds3.nonce
    assert node.acked[ENDPOINT] == "3"

    await envoy.close()
    assert node.connected is False
    assert cache.open_watches() == 0


async def test_stream_before_any_snapshot_waits_then_gets_first_version() -> None:
    cache, status = SnapshotCache(), StatusRegistry()
    envoy = FakeEnvoy(AdsServicer(cache, status))
    envoy.send(CLUSTER)
    for _ in range(1000):  # let the stream handle the request: it opens a watch (no clock involved)
        if cache.open_watches() == 1:
            break
        await asyncio.sleep(0)
    assert cache.open_watches() == 1
    assert envoy.responses.empty()  # no snapshot yet: the request waits in its watch
    cache.set_snapshot("predmesh-edge", snap("7", 5001))
    assert (await envoy.receive()).version_info == "7"
    assert await envoy.nothing_received()
    await envoy.close()


async def test_reconnecting_envoy_with_current_version_is_not_resent() -> None:
    cache, status = SnapshotCache(), StatusRegistry()
    cache.set_snapshot("predmesh-edge", snap("4", 5001))
    envoy = FakeEnvoy(AdsServicer(cache, status))
    envoy.send(CLUSTER, version="4")
    assert await envoy.nothing_received()
    await envoy.close()
