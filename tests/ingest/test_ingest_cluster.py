"""The ingestion service on a real local Redis Cluster (3 masters + 3 replicas) and the real broker.

- out-of-order and duplicated events of entities on every master leave the newest value, as on a
  single Redis, and a replay of the stream changes nothing;
- a slot moved to another master after the writer loaded the slot map: the per-master pipeline
  gets MOVED, the batch goes through the cluster client, and the newest value still wins;
- a master killed while events stream in: batches fail and are retried uncommitted until its
  replica is promoted, then every entity (on every master) holds its newest value: nothing lost;
- the cluster client's default node killed: writes resume after the failover (the writer re-reads
  the slot map itself).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis.cluster
from redis.crc import key_slot

from predmesh.clients.featureevents import FeatureEventProducer, feature_event
from predmesh.common.predcache import generation_key
from predmesh.featurestore.layout import entity_key
from predmesh.local.kafka import DEV_CONSUMER_TIMEOUTS, TansuBroker, create_topics
from predmesh.local.rediscluster import RedisCluster, wait_for_failover
from services.ingest.app import IngestApp
from services.ingest.core.cluster_writer import ClusterRedisWriter
from services.ingest.core.gates import Accepted
from services.ingest.errors import WriteFailed
from services.ingest.settings import IngestSettings
from tests.ingest.support import registry
from tests.ingest.test_ingest_app import Running

USERS = [f"u{i}" for i in range(12)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    with RedisCluster(Path(tmp_path_factory.mktemp("ingest-rcluster"))) as running:
        yield running


def _cluster_client(cluster: RedisCluster) -> redis.cluster.RedisCluster:
    """Seeded from a running node: a test may have killed the first one (`cluster.url`)."""
    return redis.cluster.RedisCluster.from_url(
        cluster.live_url().replace("redis+cluster://", "redis://"), decode_responses=True
    )


@asynccontextmanager
async def _ingest(tansu: TansuBroker, redis_url: str) -> AsyncIterator[Running]:
    suffix = uuid.uuid4().hex[:8]
    topic, dlq = f"feature-events-{suffix}", f"feature-events-dlq-{suffix}"
    await asyncio.to_thread(create_topics, tansu.bootstrap_servers, [topic, dlq])
    settings = IngestSettings(
        port=0,
        grace_s=0.1,
        bootstrap_servers=tansu.bootstrap_servers,
        topic=topic,
        dlq_topic=dlq,
        group_id=f"ingest-{suffix}",
        redis_url=redis_url,
        registry_path="unused.yaml",
        kafka_extra=DEV_CONSUMER_TIMEOUTS,
        redis_timeout_ms=300,
        retry_backoff_ms=50,
    )
    app = IngestApp(settings, registry=registry())
    await app.start()
    producer = FeatureEventProducer(tansu.bootstrap_servers, topic)
    try:
        yield Running(app, settings, producer)
    finally:
        await app.stop()


@pytest.fixture
async def ingest(tansu: TansuBroker, cluster: RedisCluster) -> AsyncIterator[Running]:
    async with _ingest(tansu, cluster.url) as running:
        yield running


async def test_out_of_order_and_duplicated_events_leave_the_newest_value_on_every_master(
    ingest: Running, cluster: RedisCluster
) -> None:
    prefix = uuid.uuid4().hex[:6]  # fresh entities per run (the cluster is shared by the module)
    ids = [f"{prefix}-{u}" for u in USERS]
    masters = {cluster.master_of(entity_key("user", i)).name for i in ids}
    assert len(masters) == 3, f"the entities must span every master, got {masters}"
    t = int(time.time() * 1000) - 60_000
    events = []
    for n, entity in enumerate(ids):
        events += [
            feature_event("user", entity, {"spend": 30.0 + n, "country": "FR"}, t + 3000),
            feature_event("user", entity, {"spend": 10.0, "country": "US"}, t + 1000),  # older: ignored
            feature_event("user", entity, {"spend": 30.0 + n, "country": "FR"}, t + 3000),  # duplicate: ignored
            feature_event("user", entity, {"spend": 20.0}, t + 2000),  # older: ignored
        ]
    await ingest.send(*events)
    await ingest.wait_processed(len(events))
    client = _cluster_client(cluster)
    try:
        for n, entity in enumerate(ids):
            stored = client.hgetall(entity_key("user", entity))
            assert stored == {"spend": str(30.0 + n), "country": "FR", "@event_time_ms": str(t + 3000)}, entity
        assert (ingest.events("written"), ingest.events("ignored_older")) == (len(ids), 3 * len(ids))
        # The prediction cache's generation of each entity (another key, maybe another master): one INCR per event.
        assert {client.get(generation_key("user", i)) for i in ids} == {"4"}
        await ingest.send(*events)  # an at-least-once replay of the whole stream changes nothing
        await ingest.wait_processed(2 * len(events))
        assert ingest.events("written") == len(ids)
        assert client.hget(entity_key("user", ids[0]), "spend") == "30.0"
    finally:
        client.close()


def _accepted(entity: str, spend: float, event_time_ms: int) -> Accepted:
    return Accepted(entity_type="user", entity_id=entity, event_time_ms=event_time_ms, values={"spend": str(spend)})


def test_a_moved_slot_is_followed_through_the_cluster_client(cluster: RedisCluster) -> None:
    client = _cluster_client(cluster)
    writer = ClusterRedisWriter(client)
    try:
        entity = f"moved-{uuid.uuid4().hex[:6]}"
        key = entity_key("user", entity)
        assert writer.write([_accepted(entity, 1.0, 1000)]) == [True]
        assert writer.fallbacks == 0  # the per-master fast path served it
        old = cluster.master_of(key)
        target = next(m for m in cluster.masters_now() if m is not old)
        cluster.move_slot(int(key_slot(key.encode())), target)  # the writer's slot map is now stale
        assert writer.write([_accepted(entity, 3.0, 3000), _accepted(entity, 2.0, 2000)]) == [True, False]
        assert writer.fallbacks == 1
        assert client.hget(key, "spend") == "3.0"
        assert writer.write([_accepted(entity, 4.0, 4000)]) == [True]
        assert writer.fallbacks == 1  # the refreshed map serves the fast path again
    finally:
        writer.close()
        client.close()


async def test_a_master_killed_while_ingesting_loses_nothing(tmp_path: Path, tansu: TansuBroker) -> None:
    with RedisCluster(tmp_path / "rc", node_timeout_ms=1000) as cluster:
        async with _ingest(tansu, cluster.url) as ingest:
            prefix = uuid.uuid4().hex[:6]
            ids = [f"{prefix}-{u}" for u in USERS]
            victim_key = entity_key("user", ids[0])
            victim = cluster.master_of(victim_key)
            base = int(time.time() * 1000) - 600_000
            waves = 0

            async def wave() -> None:
                nonlocal waves
                waves += 1
                await ingest.send(*(feature_event("user", i, {"spend": float(waves)}, base + waves) for i in ids))

            await wave()
            await ingest.wait_processed(len(ids))
            victim.crash()
            for _ in range(5):  # events keep coming while the master is down and its replica takes over
                await wave()
                await asyncio.sleep(0.3)
            await asyncio.to_thread(wait_for_failover, cluster, victim_key, victim, 15.0)
            await wave()
            await ingest.wait_processed(waves * len(ids), timeout_s=60)
            errors = ingest.app.metrics.registry.get_sample_value("predmesh_ingest_redis_errors_total")
            assert errors and errors > 0, "the kill must have failed some batch writes (else nothing was tested)"
            registry = ingest.app.metrics.registry
            assert (registry.get_sample_value("predmesh_ingest_redis_cluster_fallbacks_total") or 0) > 0
            assert (registry.get_sample_value("predmesh_ingest_redis_cluster_refreshes_total") or 0) > 0
            client = _cluster_client(cluster)
            try:
                stored = {i: client.hget(entity_key("user", i), "spend") for i in ids}
            finally:
                client.close()
            assert stored == dict.fromkeys(ids, str(float(waves)))
            # (`written` may fall short of every event: a batch retried after a partial write finds the
            # events already applied on the healthy masters and counts them `ignored_older`.)


def test_writes_resume_after_the_default_node_dies_and_its_replica_takes_over(tmp_path: Path) -> None:
    """redis-py's cluster pipeline asks its default node for EVAL's keys before anything else, and
    an error there skips its own slot-map refresh: with that node dead, every batch failed for good,
    even after the failover (CI saw ingest stuck). The writer re-reads the slot map after a failed
    batch, so writes resume once the replica is promoted."""
    with RedisCluster(tmp_path / "rc", node_timeout_ms=1000) as cluster:
        client = _cluster_client(cluster)
        writer = ClusterRedisWriter(client)
        try:
            ids = [f"dflt-{n}" for n in range(30)]
            assert writer.write([_accepted(i, 1.0, 1000) for i in ids]) == [True] * len(ids)
            default = client.get_default_node()
            victim = next(n for n in cluster.nodes if (n.host, n.port) == (default.host, default.port))
            victim_key = next(k for k in (entity_key("user", i) for i in ids) if cluster.master_of(k) is victim)
            victim.crash()
            with pytest.raises(WriteFailed):  # a key of the dead master is in the batch
                writer.write([_accepted(i, 2.0, 2000) for i in ids])
            wait_for_failover(cluster, victim_key, victim, 15.0)
            deadline, attempt = time.monotonic() + 10.0, 2
            while True:  # each attempt is newer: a failed one may have applied on the healthy masters
                attempt += 1
                try:
                    written = writer.write([_accepted(i, float(attempt), 1000 * attempt) for i in ids])
                    break
                except WriteFailed:
                    assert time.monotonic() < deadline, "writes never resumed after the failover"
                    time.sleep(0.2)
            assert written == [True] * len(ids)
            assert writer.refreshes >= 1
            fresh = _cluster_client(cluster)
            try:
                assert {fresh.hget(entity_key("user", i), "spend") for i in ids} == {str(float(attempt))}
            finally:
                fresh.close()
        finally:
            writer.close()
            client.close()
