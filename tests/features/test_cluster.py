"""The features service on a real local Redis Cluster (3 masters + 3 replicas on loopback).

- one GetFeatures over entities of every shard answers exactly what a single Redis answers;
- a master killed under load: its replica is promoted, and after the failover window no
  GetFeatures fails (and the answers still match).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from redis.crc import key_slot

from predmesh.demo import FEATURE_REGISTRY
from predmesh.demo.load import load_demo
from predmesh.featurestore.layout import entity_key
from predmesh.featurestore.registry import load_registry
from predmesh.local.rediscluster import RedisCluster, wait_for_failover
from predmesh.v1 import features_pb2, features_pb2_grpc
from tests.features.conftest import StartApp

USERS = 300
NODE_TIMEOUT_MS = 1000
# From the kill to the last request allowed to fail: node timeout, failure report, replica
# election (~0.5-1 s), the client's slot-map refresh; generous for a shared 2-core box.
FAILOVER_WINDOW_S = 6.0


def _features() -> list[str]:
    return [spec.name for spec in load_registry(FEATURE_REGISTRY).group("user").features]


def _request(ids: list[str]) -> features_pb2.GetFeaturesRequest:
    return features_pb2.GetFeaturesRequest(
        entity_type="user", entities=[features_pb2.EntityKey(entity_id=i) for i in ids], features=_features()
    )


# Known users plus unknown ones (defaults, entity_unknown) in one request.
IDS = [f"u{i:05d}" for i in range(0, USERS, 5)] + ["nobody-1", "nobody-2"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    with RedisCluster(Path(tmp_path_factory.mktemp("rcluster")), node_timeout_ms=NODE_TIMEOUT_MS) as running:
        load_demo(running.url, USERS)
        yield running


@pytest.mark.parametrize("fast_path", [True, False], ids=["per-master-pipelines", "redis-py-cluster-pipeline"])
async def test_one_request_across_shards_answers_like_single_redis(
    cluster: RedisCluster, redis_url: str, start_app: StartApp, fast_path: bool
) -> None:
    load_demo(redis_url, USERS)
    shards = {cluster.master_of(entity_key("user", i)).name for i in IDS}
    assert len(shards) == 3, f"the request must span every master, got {shards}"
    single = await start_app(redis_url=redis_url)
    clustered = await start_app(redis_url=cluster.url, redis_cluster_fast_path=fast_path)
    answers = []
    for app in (single, clustered):
        async with grpc.aio.insecure_channel(app.address) as channel:
            answers.append(await features_pb2_grpc.FeatureServiceStub(channel).GetFeatures(_request(IDS), timeout=5))
    assert answers[1] == answers[0]
    vectors = answers[1].vectors
    assert [v.entity_id for v in vectors] == IDS
    assert not any(v.entity_unknown for v in vectors[:-2]) and all(v.entity_unknown for v in vectors[-2:])


async def test_resharded_slot_is_followed(cluster: RedisCluster, start_app: StartApp) -> None:
    """A slot moved to another master after the service cached the slot map: the per-master fast path
    gets MOVED, the batch goes through the cluster client (which follows it and refreshes the map)."""
    app = await start_app(redis_url=cluster.url)
    async with grpc.aio.insecure_channel(app.address) as channel:
        stub = features_pb2_grpc.FeatureServiceStub(channel)
        before = await stub.GetFeatures(_request(IDS), timeout=5)
        key = entity_key("user", IDS[0])
        old = cluster.master_of(key)
        target = next(m for m in cluster.masters_now() if m is not old)
        slot = int(key_slot(key.encode()))
        await asyncio.to_thread(cluster.move_slot, slot, target)
        assert cluster.master_of(key) is target
        for _ in range(3):  # first: MOVED -> fallback; then the refreshed map serves the fast path
            assert await stub.GetFeatures(_request(IDS), timeout=5) == before
    # at least the MOVED read (one more when the refreshed map came from a node not yet told of the move)
    fallbacks = app.metrics.registry.get_sample_value("predmesh_features_redis_cluster_fallbacks_total")
    assert fallbacks is not None and 1.0 <= fallbacks <= 3.0


async def test_cluster_flag_with_a_plain_url(cluster: RedisCluster, start_app: StartApp) -> None:
    """`redis_cluster=True` with a `redis://` seed URL is the same as a `redis+cluster://` URL."""
    plain = cluster.url.replace("redis+cluster://", "redis://")
    app = await start_app(redis_url=plain, redis_cluster=True)
    async with grpc.aio.insecure_channel(app.address) as channel:
        reply = await features_pb2_grpc.FeatureServiceStub(channel).GetFeatures(_request(IDS), timeout=5)
    assert sum(not v.entity_unknown for v in reply.vectors) == len(IDS) - 2


async def test_master_killed_under_load_fails_nothing_after_the_failover_window(
    tmp_path: Path, start_app: StartApp
) -> None:
    with RedisCluster(tmp_path / "rc", node_timeout_ms=NODE_TIMEOUT_MS) as cluster:
        await asyncio.to_thread(load_demo, cluster.url, USERS)
        app = await start_app(redis_url=cluster.url, redis_timeout_ms=200, redis_retries=1)
        victim_key = entity_key("user", IDS[0])
        victim = cluster.master_of(victim_key)
        async with grpc.aio.insecure_channel(app.address) as channel:
            stub = features_pb2_grpc.FeatureServiceStub(channel)
            expected = await stub.GetFeatures(_request(IDS), timeout=5)
            expected_by_id = {v.entity_id: v for v in expected.vectors}
            results: list[tuple[float, float, bool]] = []  # (start, end, succeeded with the expected answer)
            stop_at = [float("inf")]

            def running() -> bool:
                """Until 3 s past the window AND 20 calls started after it ended (at most 20 s past it:
                on a loaded 2-core box one call can take a second)."""
                now = time.monotonic()
                if now < stop_at[0]:
                    return True
                window_end = stop_at[0] - 3.0
                after = sum(start >= window_end for start, _, _ in results)
                return after < 20 and now < window_end + 20.0

            async def client(offset: int) -> None:
                ids = IDS[offset:] + IDS[:offset]
                while running():
                    started = time.monotonic()
                    try:
                        reply = await stub.GetFeatures(_request(ids), timeout=2)
                        ok = {v.entity_id: v for v in reply.vectors} == expected_by_id
                    except grpc.aio.AioRpcError:
                        ok = False
                    results.append((started, time.monotonic(), ok))
                    await asyncio.sleep(0.005)

            clients = [asyncio.create_task(client(k * 7)) for k in range(4)]
            await asyncio.sleep(1.0)
            killed_at = time.monotonic()
            victim.crash()
            await asyncio.to_thread(wait_for_failover, cluster, victim_key, victim, FAILOVER_WINDOW_S)
            failover_s = time.monotonic() - killed_at
            stop_at[0] = killed_at + FAILOVER_WINDOW_S + 3.0
            await asyncio.gather(*clients)

        promoted = cluster.master_of(victim_key)
        assert promoted is not victim and promoted.running()
        before = [ok for _, ended, ok in results if ended < killed_at]
        after = [ok for started, _, ok in results if started >= killed_at + FAILOVER_WINDOW_S]
        assert before and all(before)
        assert len(after) >= 20, f"too few requests after the failover window: {len(after)}"
        assert all(after), f"{after.count(False)} of {len(after)} GetFeatures failed after the window"
        print(f"failover took {failover_s:.2f}s; failed during the window: {[ok for *_, ok in results].count(False)}")
