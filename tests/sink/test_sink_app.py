"""The sink app on a real tansu broker and embedded ClickHouse: batched, idempotent inserts from the
three topics, and AnalyticsService.Query through a real gRPC server (read-only, precise errors)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import grpc
import pytest
from confluent_kafka import Producer

from predmesh.local.kafka import DEV_CONSUMER_TIMEOUTS, TansuBroker, create_topics
from predmesh.v1 import analytics_pb2, analytics_pb2_grpc
from services.sink.app import SinkApp
from services.sink.settings import SinkSettings
from tests.sink.support import outcome, prediction


async def test_three_topics_into_the_store_and_queried(tansu: TansuBroker, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    topics = [f"predictions-{suffix}", f"shadow-{suffix}", f"outcomes-{suffix}"]
    await asyncio.to_thread(create_topics, tansu.bootstrap_servers, topics)
    producer = Producer({"bootstrap.servers": tansu.bootstrap_servers})
    events = [(topics[0], prediction(f"r{i}", "fraud", "1", "stable", i / 100)) for i in range(100)]
    events += [(topics[1], prediction(f"r{i}", "fraud", "2", "shadow", i / 100)) for i in range(20)]
    events += [(topics[2], outcome(f"r{i}", "fraud", float(i % 2))) for i in range(50)]
    events += events[:30]  # redelivered
    for topic, event in events:
        producer.produce(topic, event.SerializeToString())
    producer.produce(topics[0], b"\xff not a protobuf")
    producer.flush(10)
    settings = SinkSettings(
        port=0,
        grace_s=0.1,
        bootstrap_servers=tansu.bootstrap_servers,
        topics=topics,
        group_id=f"sink-{suffix}",
        kafka_extra=DEV_CONSUMER_TIMEOUTS,
        chdb_path=tmp_path / "analytics",
        batch_max_rows=64,
        batch_max_wait_ms=50,
    )
    app = SinkApp(settings)
    await app.start()
    try:
        assert app.server is not None and app.consumer is not None
        async with grpc.aio.insecure_channel(app.server.address) as channel:
            stub = analytics_pb2_grpc.AnalyticsServiceStub(channel)

            async def count(table: str) -> int:
                reply = await stub.Query(analytics_pb2.QueryRequest(sql=f"SELECT count() FROM predmesh.{table} FINAL"))
                return int(json.loads(reply.rows_json)[0][0])

            deadline = time.monotonic() + 30
            while app.consumer.stats.consumed < len(events) + 1:
                assert time.monotonic() < deadline, app.consumer.stats
                await asyncio.sleep(0.1)
            while app.consumer.stats.inserted < len(events):
                assert time.monotonic() < deadline, app.consumer.stats
                await asyncio.sleep(0.1)
            assert (await count("predictions"), await count("shadow_predictions"), await count("outcomes")) == (
                100,
                20,
                50,
            )
            assert app.consumer.stats.undecodable == 1
            assert app.consumer.stats.batches >= 2  # batch_max_rows 64 < 201 rows

            reply = await stub.Query(
                analytics_pb2.QueryRequest(sql="SELECT request_id FROM predmesh.predictions FINAL", max_rows=5)
            )
            assert list(reply.columns) == ["request_id"] and len(json.loads(reply.rows_json)) == 5 and reply.truncated
            for sql in ("DROP TABLE predmesh.predictions", "SELECT nope FROM predmesh.predictions"):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.Query(analytics_pb2.QueryRequest(sql=sql))
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await app.stop()
    assert app.server is None
