"""The ingestion service on real Redis and the real broker (tansu).

Newest event wins (out-of-order and duplicated events), rejects land in the dead-letter
topic with their reason, offsets are committed after the write, and a value ingested with
an old event time is served by the features assembler as the default and listed stale.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
import redis
from confluent_kafka import Consumer, TopicPartition

from predmesh.clients.featureevents import FeatureEventProducer, feature_event
from predmesh.local.kafka import DEV_CONSUMER_CONFIG, DEV_CONSUMER_TIMEOUTS, TansuBroker, create_topics
from services.features.core.assembler import EntityRequest, FeatureAssembler, FeatureQuery
from services.features.core.store import RedisFeatureStore
from services.features.metrics import FeaturesMetrics
from services.ingest.app import IngestApp
from services.ingest.settings import IngestSettings
from services.ingest.transport.converters import DETAIL_HEADER, REASON_HEADER
from tests.ingest.support import registry


@dataclass
class Running:
    app: IngestApp
    settings: IngestSettings
    producer: FeatureEventProducer

    def events(self, outcome: str) -> float:
        return self.app.metrics.registry.get_sample_value("predmesh_ingest_events_total", {"outcome": outcome}) or 0.0

    def processed(self) -> float:
        return sum(self.events(o) for o in ("written", "ignored_older", "rejected"))

    async def wait_processed(self, count: int, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.processed() < count:
            assert time.monotonic() < deadline, f"only {self.processed()} of {count} events processed"
            await asyncio.sleep(0.05)

    async def send(self, *events: object) -> None:
        for ev in events:
            self.producer.send(ev)  # type: ignore[arg-type]
        await asyncio.to_thread(self.producer.flush, 10)


@pytest.fixture
async def ingest(tansu: TansuBroker, redis_url: str) -> AsyncIterator[Running]:
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
        retry_backoff_ms=50,
    )
    app = IngestApp(settings, registry=registry())
    await app.start()
    producer = FeatureEventProducer(tansu.bootstrap_servers, topic)
    try:
        yield Running(app, settings, producer)
    finally:
        await app.stop()


def now_ms() -> int:
    return int(time.time() * 1000)


async def test_out_of_order_and_duplicated_events_leave_the_newest_value(ingest: Running, redis_url: str) -> None:
    t = now_ms() - 60_000
    events = [
        feature_event("user", "u1", {"spend": 30.0, "country": "FR"}, t + 3000),
        feature_event("user", "u1", {"spend": 10.0, "country": "US"}, t + 1000),  # older: ignored
        feature_event("user", "u1", {"spend": 30.0, "country": "FR"}, t + 3000),  # duplicate: ignored
        feature_event("user", "u1", {"spend": 20.0}, t + 2000),  # older: ignored
        feature_event("user", "u2", {"spend": 1.0}, t + 1000),
        feature_event("user", "u2", {"spend": 2.0}, t + 2000),  # newer: written
    ]
    await ingest.send(*events)
    await ingest.wait_processed(len(events))
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert client.hgetall("features:user:u1") == {"spend": "30.0", "country": "FR", "@event_time_ms": str(t + 3000)}
        assert client.hgetall("features:user:u2") == {"spend": "2.0", "@event_time_ms": str(t + 2000)}
        assert (ingest.events("written"), ingest.events("ignored_older")) == (3, 3)

        # A replay of the whole stream (at-least-once redelivery) changes nothing.
        await ingest.send(*events)
        await ingest.wait_processed(2 * len(events))
        assert client.hget("features:user:u1", "spend") == "30.0"
        assert client.hget("features:user:u2", "spend") == "2.0"
        assert ingest.events("written") == 3
    finally:
        client.close()
    # Offsets were committed once the batches were written: the group's committed offset is the end.
    committed = await asyncio.to_thread(_committed, ingest.settings)
    assert committed == 2 * len(events)
    lag = ingest.app.metrics.registry.get_sample_value("predmesh_ingest_event_to_write_seconds_count")
    assert lag == 3  # one event-to-write observation per written event


def _committed(settings: IngestSettings) -> int:
    consumer = Consumer(
        {"bootstrap.servers": settings.bootstrap_servers, "group.id": settings.group_id, **DEV_CONSUMER_CONFIG}
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            (tp,) = consumer.committed([TopicPartition(settings.topic, 0)], timeout=5)
            if tp.offset >= 0 or time.monotonic() > deadline:
                return int(tp.offset)
            time.sleep(0.1)
    finally:
        consumer.close()


def _read_dlq(settings: IngestSettings, expected: int) -> list[tuple[bytes, dict[str, str]]]:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"dlq-reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            **DEV_CONSUMER_CONFIG,
        }
    )
    consumer.subscribe([settings.dlq_topic])
    out: list[tuple[bytes, dict[str, str]]] = []
    try:
        deadline = time.monotonic() + 20
        while len(out) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(10, 0.2):
                if msg.error() is None:
                    raw_headers: list[tuple[str, bytes]] = list(msg.headers() or [])  # type: ignore[arg-type]
                    headers = {k: (v or b"").decode() for k, v in raw_headers}
                    out.append((msg.value() or b"", headers))
    finally:
        consumer.close()
    return out


async def test_invalid_events_land_in_the_dead_letter_topic_with_their_reason(ingest: Running, redis_url: str) -> None:
    bad_range = feature_event("user", "u7", {"spend": -5.0}, now_ms())
    bad_feature = feature_event("user", "u8", {"spnd": 1.0}, now_ms())
    good = feature_event("user", "u9", {"spend": 950.0}, now_ms())  # above p95: warned, still written
    await ingest.send(bad_range, b"\xff\x00 not a FeatureEvent", bad_feature, good)
    await ingest.wait_processed(4)
    letters = await asyncio.to_thread(_read_dlq, ingest.settings, 3)
    by_reason = {headers[REASON_HEADER]: (value, headers) for value, headers in letters}
    assert set(by_reason) == {"invalid_value", "undecodable", "unknown_feature"}
    value, headers = by_reason["invalid_value"]
    assert value == bad_range.SerializeToString()  # the record itself, unchanged
    assert "spend: -5.0 is outside" in headers[DETAIL_HEADER]
    assert by_reason["unknown_feature"][0] == bad_feature.SerializeToString()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert client.exists("features:user:u7", "features:user:u8") == 0  # nothing of a rejected event
        assert client.hget("features:user:u9", "spend") == "950.0"
    finally:
        client.close()
    sample: Callable[..., float | None] = ingest.app.metrics.registry.get_sample_value
    assert sample("predmesh_ingest_rejected_total", {"reason": "invalid_value"}) == 1
    assert sample("predmesh_ingest_rejected_total", {"reason": "undecodable"}) == 1
    assert (
        sample(
            "predmesh_ingest_distribution_warnings_total",
            {"entity_type": "user", "feature": "spend", "check": "above_p95"},
        )
        == 1
    )


async def test_a_value_older_than_max_age_is_served_as_default_and_listed_stale(
    ingest: Running, redis_url: str
) -> None:
    two_hours_ago = now_ms() - 2 * 3600 * 1000
    await ingest.send(
        feature_event("user", "old", {"spend": 42.0, "txn_count": 7}, two_hours_ago),
        feature_event("user", "new", {"spend": 42.0, "txn_count": 7}, now_ms()),
    )
    await ingest.wait_processed(2)
    store = RedisFeatureStore.from_url(redis_url, timeout_s=2.0)
    metrics = FeaturesMetrics()
    try:
        assembler = FeatureAssembler(registry(), store, metrics=metrics)
        old, new = await assembler.get_features(
            FeatureQuery("user", [EntityRequest("old"), EntityRequest("new")], ["spend", "txn_count", "country"])
        )
    finally:
        await store.close()
    # spend follows the group's max_age_s (1 h): stale -> default 0.0; txn_count has its own 1 day limit.
    assert (old.values, old.stale, old.missing) == ([0.0, 7, "other"], ["spend"], ["country"])
    assert (new.values, new.stale) == ([42.0, 7, "other"], [])
    assert metrics.registry.get_sample_value("predmesh_features_age_seconds_count", {"entity_type": "user"}) == 2
    over_an_hour = metrics.registry.get_sample_value(
        "predmesh_features_age_seconds_bucket", {"entity_type": "user", "le": "3600.0"}
    )
    assert over_an_hour == 1  # the fresh entity only
