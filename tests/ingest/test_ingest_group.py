"""Ingestion consumers scale by partitions: two members of one consumer group on a 2-partition
topic (real broker, real Redis) split the partitions, and together leave the newest value of every
entity (events are keyed by entity, so one entity's events stay in one partition, in order)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis

from predmesh.clients.featureevents import FeatureEventProducer, feature_event
from predmesh.featurestore.layout import entity_key
from predmesh.local.kafka import DEV_CONSUMER_TIMEOUTS, TansuBroker, create_topics
from services.ingest.app import IngestApp
from services.ingest.settings import IngestSettings
from tests.ingest.support import registry

ENTITIES = [f"g{i}" for i in range(20)]


def _processed(app: IngestApp) -> float:
    sample = app.metrics.registry.get_sample_value
    return sum(sample("predmesh_ingest_events_total", {"outcome": o}) or 0.0 for o in ("written", "ignored_older"))


@pytest.fixture
async def group(tansu: TansuBroker, redis_url: str) -> AsyncIterator[tuple[list[IngestApp], str]]:
    suffix = uuid.uuid4().hex[:8]
    topic = f"feature-events-{suffix}"
    await asyncio.to_thread(create_topics, tansu.bootstrap_servers, [topic, f"{topic}-dlq"], 2)
    apps = []
    for _ in range(2):
        settings = IngestSettings(
            port=0,
            grace_s=0.1,
            bootstrap_servers=tansu.bootstrap_servers,
            topic=topic,
            dlq_topic=f"{topic}-dlq",
            group_id=f"ingest-{suffix}",
            redis_url=redis_url,
            registry_path="unused.yaml",
            kafka_extra=DEV_CONSUMER_TIMEOUTS,
            retry_backoff_ms=50,
        )
        app = IngestApp(settings, registry=registry())
        await app.start()
        apps.append(app)
    try:
        yield apps, topic
    finally:
        for app in apps:
            await app.stop()


async def test_two_members_split_the_partitions_and_the_newest_value_wins(
    group: tuple[list[IngestApp], str], tansu: TansuBroker, redis_url: str
) -> None:
    apps, topic = group
    producer = FeatureEventProducer(tansu.bootstrap_servers, topic)
    prefix = uuid.uuid4().hex[:6]
    base = int(time.time() * 1000) - 600_000
    sent = 0
    # Waves of events (each newer than the last) until the group has rebalanced and both members
    # wrote some: the assignment takes a rebalance after the second member joins.
    deadline = time.monotonic() + 45
    wave = 0
    while not all(_processed(app) > 0 for app in apps):
        assert time.monotonic() < deadline, f"processed per member: {[_processed(a) for a in apps]}"
        wave += 1
        for entity in ENTITIES:
            producer.send(feature_event("user", f"{prefix}-{entity}", {"spend": float(wave)}, base + wave * 1000))
        await asyncio.to_thread(producer.flush, 10)
        sent += len(ENTITIES)
        while sum(_processed(a) for a in apps) < sent:
            assert time.monotonic() < deadline, f"{sum(_processed(a) for a in apps)} of {sent} processed"
            await asyncio.sleep(0.1)
    # An older event for every entity (out of order, same partition as its entity's newer ones).
    for entity in ENTITIES:
        producer.send(feature_event("user", f"{prefix}-{entity}", {"spend": 999.0}, base))  # ignored
    await asyncio.to_thread(producer.flush, 10)
    sent += len(ENTITIES)
    while sum(_processed(a) for a in apps) < sent:
        assert time.monotonic() < deadline, f"{sum(_processed(a) for a in apps)} of {sent} processed"
        await asyncio.sleep(0.1)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        stored = {e: client.hget(entity_key("user", f"{prefix}-{e}"), "spend") for e in ENTITIES}
    finally:
        client.close()
    assert stored == dict.fromkeys(ENTITIES, str(float(wave)))
