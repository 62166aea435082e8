"""The prediction cache's shared level on a real Redis Cluster (3 masters + 3 replicas on loopback).

- stored by one replica, answered to another from every master (one script per master);
- a slot moved to another master (MOVED): answered through redis-py's cluster client, whose
  refreshed slot map the next lookup uses directly; a key of a slot being migrated (ASK) likewise;
- a write by the real ingestion cluster writer (`ClusterRedisWriter`: generation INCR + PUBLISH)
  invalidates exactly that entity's entries, in the shared level (generation) and, through the
  subscription, in the in-process level;
- the node holding the subscription killed: the in-process level is cleared, the subscription
  moves to another node and invalidations arrive again;
- a master killed: lookups of its keys are misses (never errors) during the failover, the other
  masters' keys still hit, and after the failover everything hits again through the same client.

The gateway's features and orchestrator are its small fakes (tests/gateway/fakes.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.cluster
from redis.crc import key_slot
from redis.exceptions import AskError, RedisClusterException

from predmesh.common.predcache import INVALIDATE_CHANNEL, generation_key
from predmesh.featurestore.redis_client import parse_target
from predmesh.local.rediscluster import RedisCluster, RedisClusterNode, wait_for_failover
from services.gateway.core.cache import cache_key
from services.gateway.transport.cache_store import ENTRY_PREFIX
from services.gateway.transport.cache_store_cluster import ClusterSharedCache
from services.ingest.core.cluster_writer import ClusterRedisWriter
from services.ingest.core.gates import Accepted
from services.ingest.core.writer import RedisWriter
from services.ingest.errors import WriteFailed
from tests.gateway.test_cache_redis import Replica, item, wait_until

USERS = [f"u{i}" for i in range(12)]


def ingest_write(url: str, entity_id: str, event_time_ms: int = 1_700_000_000_000) -> None:
    """Write one event of user `entity_id` with the ingestion service's writer for `url`
    (`ClusterRedisWriter` on a cluster, `RedisWriter` on one Redis): features, generation, PUBLISH.
    Retries while a cluster is failing over (the ingest loop retries its batches the same way)."""
    target = parse_target(url)
    event = Accepted("user", entity_id, event_time_ms, {"avg_amount_30d": "1"})
    if not target.cluster:
        client = redis.Redis.from_url(url)
        try:
            assert RedisWriter(client).write([event]) == [True]
        finally:
            client.close()
        return
    deadline = time.monotonic() + 15.0
    while True:
        cluster = redis.cluster.RedisCluster.from_url(target.url)
        writer = ClusterRedisWriter(cluster)
        try:
            writer.write([event])  # [False] after a retry: the first attempt wrote it
            return
        except (WriteFailed, redis.RedisError, RedisClusterException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
        finally:
            writer.close()
            cluster.close()


def entry_key(user: str) -> str:
    return ENTRY_PREFIX + cache_key("fraud", "2", "r1", "user", item(user)).text


@pytest.fixture
async def cluster_replicas(redis_cluster_url: str) -> AsyncIterator[Callable[..., Replica]]:
    made: list[Replica] = []

    def make(**kwargs: Any) -> Replica:
        made.append(Replica(redis_cluster_url, **kwargs))
        return made[-1]

    yield make
    for rep in made:
        await rep.close()


async def predict_all(rep: Replica, users: list[str] = USERS) -> dict[str, bool]:
    """One concurrent Predict per user (one coalesced shared lookup); user -> cached."""
    outs = await asyncio.gather(*(rep.predict(item(u)) for u in users))
    assert not any(o.degraded for o in outs)
    return {u: o.cached for u, o in zip(users, outs, strict=True)}


async def test_stored_by_one_replica_hit_by_another_across_masters(
    redis_cluster: RedisCluster, cluster_replicas: Callable[..., Replica]
) -> None:
    a, b = cluster_replicas(), cluster_replicas()
    assert isinstance(a.shared, ClusterSharedCache)
    assert not any((await predict_all(a)).values())
    per_master = {}
    for master in redis_cluster.masters_now():
        client = master.client()
        try:
            per_master[master.name] = len(list(client.scan_iter(ENTRY_PREFIX + "*")))
        finally:
            client.close()
    assert sum(per_master.values()) == len(USERS) and sum(n > 0 for n in per_master.values()) == 3, per_master

    assert all((await predict_all(b)).values())  # every entry, from every master, in one window
    assert b.models.infer_calls == []
    assert b.predictor.metrics.cache_lookups.labels("fraud", "shared")._value.get() == len(USERS)
    assert isinstance(b.shared, ClusterSharedCache) and b.shared.fallbacks == 0  # one script per master


async def test_cluster_ingest_write_invalidates_exactly_that_entity(
    redis_cluster_url: str, cluster_replicas: Callable[..., Replica]
) -> None:
    a = cluster_replicas()
    await a.subscribe()
    await predict_all(a)
    assert len(a.cache) == len(USERS)

    await asyncio.to_thread(ingest_write, redis_cluster_url, "u3")
    await wait_until(lambda: len(a.cache) == len(USERS) - 1)  # the PUBLISH reached the in-process level
    assert (await predict_all(a)) == {u: u != "u3" for u in USERS}  # u3 scored again, the others local hits

    c = cluster_replicas()  # no subscription, empty in-process level: only the generations decide
    await asyncio.to_thread(ingest_write, redis_cluster_url, "u5")
    assert (await predict_all(c)) == {u: u not in ("u3", "u5") for u in USERS} | {"u3": True}
    # (u3 was stored again by `a` with its new generation; u5's entry holds the old one)


async def test_a_moved_slot_is_followed_then_read_directly_again(
    redis_cluster: RedisCluster, cluster_replicas: Callable[..., Replica]
) -> None:
    b = cluster_replicas()
    await predict_all(b)  # stored, and b's level holds the slot map
    assert isinstance(b.shared, ClusterSharedCache) and b.shared.fallbacks == 0
    moved = entry_key("u0")
    source = redis_cluster.master_of(moved)
    target = next(m for m in redis_cluster.masters_now() if m is not source)
    await asyncio.to_thread(redis_cluster.move_slot, key_slot(moved.encode()), target)
    assert redis_cluster.master_of(moved) is target
    b.cache.clear()
    assert all((await predict_all(b)).values())  # the script on the old master failed: the cluster client answered
    assert b.shared.fallbacks == 1
    b.cache.clear()
    assert all((await predict_all(b)).values())  # the map was refreshed: one script per master again
    assert b.shared.fallbacks == 1


async def test_a_key_of_a_slot_being_migrated_is_followed_with_ask(
    redis_cluster: RedisCluster, cluster_replicas: Callable[..., Replica]
) -> None:
    """Mid-migration (source MIGRATING, target IMPORTING, the entry already moved): the script on
    the source must not read the entry as absent; the cluster client follows the ASK."""
    b = cluster_replicas()
    await predict_all(b)
    assert isinstance(b.shared, ClusterSharedCache)
    moving = entry_key("u1")
    slot = key_slot(moving.encode())
    source = redis_cluster.master_of(moving)
    target = next(m for m in redis_cluster.masters_now() if m is not source)
    src, dst = source.client(), target.client()
    src_id, dst_id = src.execute_command("CLUSTER", "MYID"), dst.execute_command("CLUSTER", "MYID")
    try:
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        src.execute_command("MIGRATE", target.host, target.port, moving, 0, 5000)
        with pytest.raises(AskError):  # the source no longer holds it: clients are sent to the target
            src.get(moving)
        b.cache.clear()
        assert all((await predict_all(b)).values())  # u1 answered from the target through ASK
        assert b.shared.fallbacks == 1
    finally:
        for master in redis_cluster.masters_now():  # finish the migration: the slot is the target's
            client = master.client()
            try:
                client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
            finally:
                client.close()
        src.close()
        dst.close()


def _subscribers(cluster: RedisCluster) -> dict[str, int]:
    counts = {}
    for node in cluster.nodes:
        if node.running():
            client = node.client()
            try:
                counts[node.name] = int(client.pubsub_numsub(INVALIDATE_CHANNEL)[0][1])
            finally:
                client.close()
    return counts


def _has_live_replica(master: RedisClusterNode) -> bool:
    client = master.client()
    try:
        return int(client.info("replication").get("connected_slaves", 0)) > 0
    finally:
        client.close()


@contextmanager
def _own_cluster(path: Path) -> Iterator[RedisCluster]:
    with RedisCluster(path, node_timeout_ms=1000) as cluster:
        yield cluster


async def test_subscription_node_and_a_master_killed(tmp_path: Path) -> None:
    with _own_cluster(tmp_path / "rc") as cluster:
        errors: list[str] = []
        a, b = Replica(cluster.url), Replica(cluster.url, on_error=errors.append)
        try:
            await a.subscribe()
            await predict_all(b)  # b reads the slot map while every node runs (the seed node may die below)
            # 1. The node holding the subscription dies (master or replica): the in-process level
            #    is cleared, the subscription moves, and invalidations arrive again.
            await predict_all(a)
            holders = [name for name, n in (await asyncio.to_thread(_subscribers, cluster)).items() if n]
            assert len(holders) == 1 and len(a.cache) == len(USERS)
            holder = next(node for node in cluster.nodes if node.name == holders[0])
            held = [u for u in USERS if cluster.master_of(entry_key(u)) is holder]  # empty: a replica
            holder.crash()
            await wait_until(lambda: len(a.cache) == 0, 10.0)
            await wait_until(lambda: sum(_subscribers(cluster).values()) == 1, 10.0)
            await predict_all(a)
            await asyncio.to_thread(ingest_write, cluster.live_url(), "u1")
            await wait_until(lambda: len(a.cache) == len(USERS) - 1, 10.0)

            # 2. A master (with a live replica) dies: its keys miss, never fail; the others still hit.
            if held:
                await asyncio.to_thread(wait_for_failover, cluster, entry_key(held[0]), holder)
            await asyncio.to_thread(cluster.wait_healthy, 15.0)
            a.cache.clear()
            await predict_all(a)  # stores again what the failover lost (replication is asynchronous) and u1
            a.cache.clear()
            assert all((await predict_all(a)).values())
            b.cache.clear()
            await predict_all(b)  # b follows the failover of step 1 (as a replica serving traffic would)
            for master in cluster.masters_now():  # the entries reached the replicas
                client = master.client()
                try:
                    client.execute_command("WAIT", 1, 2000)
                finally:
                    client.close()
            victim = next(
                cluster.master_of(entry_key(u)) for u in USERS if _has_live_replica(cluster.master_of(entry_key(u)))
            )
            on_victim = {
                u
                for u in USERS
                if victim in (cluster.master_of(entry_key(u)), cluster.master_of(generation_key("user", u)))
            }
            assert 0 < len(on_victim) < len(USERS)
            victim.crash()
            b.cache.clear()
            got = await predict_all(b)
            assert not any(got[u] for u in on_victim)  # the dead master's keys miss, never fail
            # The other masters' keys still hit. A window that had to wait out the dead master's
            # bounded fallback may miss as a whole on a loaded box: look again, briefly.
            others = [u for u in USERS if u not in on_victim]
            async with asyncio.timeout(5.0):
                while not all(got[u] for u in others):
                    b.cache.clear()
                    got = await predict_all(b)
            assert "get" in errors  # counted, not raised
            victim_key = entry_key(next(iter(on_victim)))
            failover = asyncio.create_task(asyncio.to_thread(wait_for_failover, cluster, victim_key, victim))
            while not failover.done():  # lookups during the failover: answers, never errors
                b.cache.clear()
                await predict_all(b)
                await asyncio.sleep(0.05)
            await failover

            # 3. After the failover the same client follows the new map: everything hits again.
            async def all_hit() -> bool:
                b.cache.clear()
                return all((await predict_all(b)).values())

            async with asyncio.timeout(10.0):
                while not await all_hit():  # noqa: ASYNC110 - polling the answers
                    await asyncio.sleep(0.1)
        finally:
            await a.close()
            await b.close()
