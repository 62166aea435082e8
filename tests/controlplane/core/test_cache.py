"""SnapshotCache: watches answered through queues, consistency enforced before publishing."""

from __future__ import annotations

import asyncio

import pytest
from envoy.config.core.v3 import base_pb2

from services.controlplane.core.cache import Response, SnapshotCache
from services.controlplane.core.config import Endpoint, default_config
from services.controlplane.core.resources import build_resources
from services.controlplane.core.snapshot import CLUSTER, ENDPOINT, Snapshot
from services.controlplane.errors import InconsistentSnapshot

NODE = base_pb2.Node(id="n1", cluster="edge")


def snap(version: str, port: int = 50051, previous: Snapshot | None = None) -> Snapshot:
    return Snapshot.build(version, build_resources(default_config([Endpoint(host="127.0.0.1", port=port)])), previous)


async def test_watch_answered_at_once_when_snapshot_is_newer() -> None:
    cache = SnapshotCache()
    cache.set_snapshot("edge", snap("1"))
    queue: asyncio.Queue[Response] = asyncio.Queue()
    watch = cache.create_watch(NODE, CLUSTER, [], "", queue)
    resp = queue.get_nowait()
    assert (resp.version, resp.watch_id, [c.name for c in resp.resources]) == ("1", watch.id, ["gateway"])
    assert cache.open_watches() == 0


async def test_watch_parks_until_set_snapshot_changes_its_type() -> None:
    cache = SnapshotCache()
    first = snap("1")
    cache.set_snapshot("edge", first)
    queue: asyncio.Queue[Response] = asyncio.Queue()
    cache.create_watch(NODE, CLUSTER, [], "1", queue)
    cache.create_watch(NODE, ENDPOINT, ["gateway"], "1", queue)
    assert queue.empty() and cache.open_watches("edge") == 2

    answered = cache.set_snapshot("edge", snap("2", port=50052, previous=first))  # only EDS changed
    assert answered == 1
    resp = queue.get_nowait()
    assert resp.type_url == ENDPOINT and resp.version == "2"
    assert queue.empty() and cache.open_watches("edge") == 1


async def test_inconsistent_snapshot_is_refused_and_old_one_kept() -> None:
    cache = SnapshotCache()
    cache.set_snapshot("edge", snap("1"))
    broken = Snapshot.build("2", {**build_resources(default_config([])), ENDPOINT: []})
    with pytest.raises(InconsistentSnapshot):
        cache.set_snapshot("edge", broken)
    kept = cache.get_snapshot("edge")
    assert kept is not None and kept.version == "1"


async def test_cancelled_watch_is_not_answered_and_nodes_are_grouped_by_cluster() -> None:
    cache = SnapshotCache()
    queue: asyncio.Queue[Response] = asyncio.Queue()
    watch = cache.create_watch(NODE, CLUSTER, [], "", queue)
    cache.cancel_watch(watch)
    other = cache.create_watch(base_pb2.Node(id="n2", cluster="other"), CLUSTER, [], "", queue)
    cache.set_snapshot("edge", snap("1"))
    assert queue.empty()
    cache.set_snapshot("other", snap("1"))
    assert queue.get_nowait().watch_id == other.id
