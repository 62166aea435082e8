"""Failure paths of the ingestion service on the real broker: Redis down -> nothing committed, the batch is
retried and written once Redis is back; a crashed consumer thread -> health NOT_SERVING; a failed start leaks
nothing."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from predmesh.clients.featureevents import FeatureEventProducer, feature_event
from predmesh.local.kafka import DEV_CONSUMER_TIMEOUTS, TansuBroker, create_topics
from predmesh.local.procs import RedisServer, free_port
from services.ingest.app import IngestApp
from services.ingest.core.gates import QualityGates
from services.ingest.settings import IngestSettings
from tests.common.lifecycle_support import assert_failed_start_leaks_nothing
from tests.ingest.support import registry
from tests.ingest.test_ingest_app import _committed


async def _settings(tansu: TansuBroker, redis_url: str) -> IngestSettings:
    suffix = uuid.uuid4().hex[:8]
    topic = f"feature-events-{suffix}"
    await asyncio.to_thread(create_topics, tansu.bootstrap_servers, [topic, f"{topic}-dlq"])
    return IngestSettings(
        port=0,
        grace_s=0.1,
        bootstrap_servers=tansu.bootstrap_servers,
        topic=topic,
        dlq_topic=f"{topic}-dlq",
        group_id=f"ingest-{suffix}",
        redis_url=redis_url,
        redis_timeout_ms=300,
        registry_path="unused.yaml",
        kafka_extra=DEV_CONSUMER_TIMEOUTS,
        retry_backoff_ms=50,
    )


def _sample(app: IngestApp, name: str, **labels: str) -> float:
    return app.metrics.registry.get_sample_value(name, labels) or 0.0


async def _until(check, timeout_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_nothing_is_committed_while_redis_is_down(tansu: TansuBroker, tmp_path: Path) -> None:
    server = RedisServer(port=free_port(), workdir=tmp_path / "redis")  # not started yet: Redis is down
    settings = await _settings(tansu, server.url)
    app = IngestApp(settings, registry=registry())
    await app.start()
    try:
        producer = FeatureEventProducer(tansu.bootstrap_servers, settings.topic)
        producer.send(feature_event("user", "u1", {"spend": 5.0}))
        await asyncio.to_thread(producer.flush, 10)
        await _until(lambda: _sample(app, "predmesh_ingest_redis_errors_total") >= 2)  # failed, retried
        assert await asyncio.to_thread(_committed_now, settings) < 0  # no offset committed
        assert _sample(app, "predmesh_ingest_events_total", outcome="written") == 0
        await asyncio.to_thread(server.start)
        try:
            await _until(lambda: _sample(app, "predmesh_ingest_events_total", outcome="written") == 1)
            client = redis.Redis.from_url(server.url, decode_responses=True)
            assert client.hget("features:user:u1", "spend") == "5.0"
            client.close()
            assert await asyncio.to_thread(_committed, settings) == 1
        finally:
            await app.stop()
            await asyncio.to_thread(server.stop)
    finally:
        await app.stop()


def _committed_now(settings: IngestSettings) -> int:
    from confluent_kafka import Consumer, TopicPartition

    from predmesh.local.kafka import DEV_CONSUMER_CONFIG

    consumer = Consumer(
        {"bootstrap.servers": settings.bootstrap_servers, "group.id": settings.group_id, **DEV_CONSUMER_CONFIG}
    )
    try:
        (tp,) = consumer.committed([TopicPartition(settings.topic, 0)], timeout=5)
        return int(tp.offset)
    finally:
        consumer.close()


async def test_a_crashed_consumer_thread_turns_health_not_serving(
    tansu: TansuBroker, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(self: QualityGates, event: object) -> object:
        raise RuntimeError("bug in a gate")

    monkeypatch.setattr(QualityGates, "check", boom)
    settings = await _settings(tansu, redis_url)
    app = IngestApp(settings, registry=registry())
    await app.start()
    try:
        async with grpc.aio.insecure_channel(app.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            serving = health_pb2.HealthCheckResponse.SERVING
            assert (await health.Check(health_pb2.HealthCheckRequest())).status == serving
            producer = FeatureEventProducer(tansu.bootstrap_servers, settings.topic)
            producer.send(feature_event("user", "u1", {"spend": 5.0}))
            await asyncio.to_thread(producer.flush, 10)
            not_serving = health_pb2.HealthCheckResponse.NOT_SERVING

            async def status() -> int:
                return (await health.Check(health_pb2.HealthCheckRequest())).status

            deadline = time.monotonic() + 30
            while await status() != not_serving:
                assert time.monotonic() < deadline, "health stayed SERVING after the consumer thread crashed"
                await asyncio.sleep(0.05)
        # The thread reports the crash first, then flushes its producer and closes its consumer
        # (up to ~5 s): it ends after that, not necessarily by the time health says NOT_SERVING.
        assert app.loop is not None
        deadline = time.monotonic() + 15
        while app.loop.alive:
            assert time.monotonic() < deadline, "the crashed consumer thread did not end"
            await asyncio.sleep(0.05)
    finally:
        await app.stop()


async def test_failed_start_leaks_nothing(tansu: TansuBroker, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = await _settings(tansu, redis_url)
    await assert_failed_start_leaks_nothing(IngestApp(settings, registry=registry()), monkeypatch)
