"""The logger heals itself: a broker killed and restarted under load (tansu forgets producer ids and
topics) is produced to again without restarting the logger, and health reports it meanwhile."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from confluent_kafka import KafkaError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from logger_support import (
    RunLogger,
    Topics,
    consume,
    ensure_topics,
    logger_settings,
    make_event,
    request_ids,
    wait_for,
)

from predmesh.clients.logger import LoggerClient
from predmesh.local.kafka import TansuBroker
from services.logger.core.journal import Journal
from services.logger.core.metrics import LoggerMetrics
from services.logger.core.pipeline import LogPipeline
from services.logger.core.producer import KafkaSink, producer_config

P = "predmesh_logger_"


async def _health(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        resp = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        return int(resp.status)


@pytest.mark.parametrize(("down_s", "topics_after_s"), [(0.3, 0.0), (0.0, 2.0), (3.0, 1.0)])
async def test_broker_killed_under_load_is_produced_to_again_without_a_logger_restart(
    own_tansu: TansuBroker, topics: Topics, run_logger: RunLogger, down_s: float, topics_after_s: float
) -> None:
    broker = own_tansu
    broker.start()
    ensure_topics(broker.bootstrap_servers, topics)
    # The production defaults for timeouts (30 s delivery timeout, 5 s back-off cap).
    async with run_logger(broker.bootstrap_servers, topics, delivery_timeout_ms=30_000, retry_backoff_max_s=5.0) as app:
        m = app.metrics
        client = LoggerClient(app.address)
        await client.start()
        sent: list[str] = []
        stop = asyncio.Event()

        async def load() -> None:
            i = 0
            while not stop.is_set():
                assert client.emit(make_event(i, prefix="load"))
                sent.append(f"load-{i}")
                i += 1
                await asyncio.sleep(0.004)

        task = asyncio.create_task(load())
        try:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(broker.crash, signal.SIGKILL)
            await asyncio.to_thread(broker.reap)
            await asyncio.sleep(down_s)
            restarted_at = len(sent)
            await asyncio.to_thread(broker.start)
            await asyncio.sleep(topics_after_s)  # a supervisor re-creates the topics a moment later
            ensure_topics(broker.bootstrap_servers, topics)
            await asyncio.sleep(1.5)
            stop.set()
            await task
            await wait_for(lambda: client.stats.pending == 0, 20, "logger acks")
            await wait_for(lambda: m.value(P + "journal_backlog_events") == 0, 30, "journal delivered")
            assert await _health(app.address) == health_pb2.HealthCheckResponse.SERVING
        finally:
            stop.set()
            await client.stop(timeout_s=5)
        assert m.value(P + "producer_restarts_total") >= 1

    # Everything sent after the broker came back (and the spilled tail before) is in the new broker.
    expected = set(sent[restarted_at:])
    messages = await asyncio.to_thread(consume, broker.bootstrap_servers, topics.both, len(expected))
    ids = set(request_ids(messages))
    missing = expected - ids
    assert not missing, f"{len(missing)} events never produced after the broker restart, e.g. {sorted(missing)[:5]}"


async def test_full_journal_refuses_events_reports_not_serving_and_recovers(
    own_tansu: TansuBroker, topics: Topics, run_logger: RunLogger
) -> None:
    """Kafka down long enough to fill the journal: new events are refused (counted, gauge, NOT_SERVING),
    nothing journaled is touched; when Kafka returns, the backlog drains and the client's retried events land."""
    broker = own_tansu  # not started: nothing can be delivered
    async with run_logger(broker.bootstrap_servers, topics, journal_max_bytes=20_000, segment_bytes=4096) as app:
        m = app.metrics
        client = LoggerClient(app.address, reconnect_backoff_max_s=0.2)
        await client.start()
        try:
            for i in range(300):  # ~50 KB of events: journaled (the bound is checked before each batch)
                assert client.emit(make_event(i, prefix="full"))
            await wait_for(lambda: client.stats.pending == 0, 20, "first events journaled")
            for i in range(300, 400):
                assert client.emit(make_event(i, prefix="full"))
            await wait_for(lambda: m.value(P + "journal_full") == 1, 20, "journal full")
            await wait_for(lambda: m.value(P + "events_rejected_total", reason="journal_full") > 0, 20, "refusals")
            pipeline = app.pipeline
            assert pipeline is not None
            await wait_for(lambda: not pipeline.healthy, 5, "pipeline unhealthy")
            await asyncio.sleep(1.0)  # the app follows pipeline health every 0.5 s
            assert await _health(app.address) == health_pb2.HealthCheckResponse.NOT_SERVING
            assert client.stats.pending > 0  # refused events stay with the client (retried), not dropped

            await asyncio.to_thread(broker.start)
            ensure_topics(broker.bootstrap_servers, topics)
            await wait_for(lambda: client.stats.pending == 0, 60, "client's refused events accepted after the drain")
            await wait_for(lambda: m.value(P + "journal_backlog_events") == 0, 30, "journal delivered")
            await wait_for(lambda: pipeline.healthy, 5, "pipeline healthy")
            await asyncio.sleep(1.0)
            assert await _health(app.address) == health_pb2.HealthCheckResponse.SERVING
            assert m.value(P + "journal_full") == 0
        finally:
            await client.stop(timeout_s=5)
        assert m.value(P + "events_dropped_total", reason="dead_letter") == 0

    messages = await asyncio.to_thread(consume, broker.bootstrap_servers, topics.both, 400)
    ids = set(request_ids(messages))
    assert {f"full-{i}" for i in range(400)} <= ids


async def test_a_failing_delivery_loop_rebuilds_its_producer_without_a_restart(
    tansu: TansuBroker, topics: Topics, tmp_path: Path
) -> None:
    """Unexpected exceptions in the delivery loop: new producer + replay from the journal, NOT healthy while
    it keeps failing, healthy again (and everything delivered) once a producer works."""
    ensure_topics(tansu.bootstrap_servers, topics)
    settings = logger_settings(tmp_path / "journal", tansu.bootstrap_servers, topics)
    config = producer_config(
        settings.bootstrap_servers,
        client_id="test",
        compression="lz4",
        linger_ms=1,
        delivery_timeout_ms=3000,
        max_in_flight=1000,
    )
    works = threading.Event()
    built: list[KafkaSink] = []

    def factory(on_error: Callable[[KafkaError], None]) -> KafkaSink:
        sink = KafkaSink(config, on_error)
        built.append(sink)
        if not works.is_set():

            def broken(*args: object, **kwargs: object) -> bool:
                raise RuntimeError("producer in an unexpected state")

            sink.produce = broken  # type: ignore[method-assign]
        return sink

    metrics = LoggerMetrics()
    pipeline = LogPipeline(
        Journal(settings.journal_dir),
        factory,
        metrics,
        topic=topics.predictions,
        shadow_topic=topics.shadow,
        max_in_flight=1000,
        delivery_timeout_s=3.0,
        retry_backoff_max_s=0.2,
    )
    await pipeline.start()
    try:
        await pipeline.append([make_event(i, prefix="heal").SerializeToString() for i in range(50)])
        await wait_for(lambda: not pipeline.healthy, 10, "unhealthy after repeated failures")
        assert len(built) >= 3
        works.set()
        await wait_for(lambda: m_value(metrics, "journal_backlog_events") == 0 and pipeline.healthy, 15, "healed")
    finally:
        await pipeline.stop(flush_timeout_s=2)
    messages = await asyncio.to_thread(consume, tansu.bootstrap_servers, topics.both, 50)
    assert {f"heal-{i}" for i in range(50)} <= set(request_ids(messages))


def m_value(metrics: LoggerMetrics, name: str) -> float:
    return metrics.value(P + name)
