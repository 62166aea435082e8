"""The prediction cache through the real gateway app and gRPC server, on a real Redis: the
second identical Predict says `cached`, both are logged (PredictionEvent.cached), and an event
written by the ingestion service's writer ends the hits (upstreams are in-process fakes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import redis

from predmesh.common.values import scalar_to_value
from predmesh.v1 import prediction_pb2, prediction_pb2_grpc
from services.gateway.app import GatewayApp
from services.gateway.settings import GatewaySettings
from services.ingest.core.gates import Accepted
from services.ingest.core.writer import RedisWriter
from tests.gateway.transport.upstream_fakes import Upstreams

AUTH = (("x-api-key", "k"),)


@pytest.fixture
async def upstreams() -> AsyncIterator[Upstreams]:
    fakes = Upstreams()
    await fakes.start()
    yield fakes
    await fakes.stop()


@pytest.fixture
async def stub(
    upstreams: Upstreams, redis_url: str, tmp_path: Path
) -> AsyncIterator[prediction_pb2_grpc.PredictionServiceStub]:
    routing = tmp_path / "routing.yaml"
    routing.write_text("models:\n  fraud:\n    cache: {ttl_s: 60}\n")
    settings = GatewaySettings(
        port=0,
        grace_s=0.2,
        features_target=upstreams.address,
        inference_target=upstreams.address,
        logger_target=upstreams.address,
        api_keys={"k": ["*"]},
        routing_path=str(routing),
        cache_redis_url=redis_url,
        cache_timeout_ms=1000,
    )
    app = GatewayApp(settings)
    await app.start()
    try:
        async with grpc.aio.insecure_channel(app.address) as channel:
            yield prediction_pb2_grpc.PredictionServiceStub(channel)
    finally:
        await app.stop()


def request() -> prediction_pb2.PredictRequest:
    return prediction_pb2.PredictRequest(
        request_id="r1", model="fraud", entity_id="u1", context={"amount": scalar_to_value(250.0)}
    )


async def test_cached_answer_over_grpc_then_invalidated_by_ingest(
    stub: prediction_pb2_grpc.PredictionServiceStub, upstreams: Upstreams, redis_url: str
) -> None:
    first = await stub.Predict(request(), metadata=AUTH)
    second = await stub.Predict(request(), metadata=AUTH)
    assert (first.cached, second.cached) == (False, True)
    assert second.prediction.score == first.prediction.score and len(upstreams.infer_requests) == 1
    async with asyncio.timeout(5):
        while len(upstreams.events) < 2:
            upstreams.event_arrived.clear()
            await upstreams.event_arrived.wait()
    assert [e.cached for e in upstreams.events] == [False, True]

    client = redis.Redis.from_url(redis_url)
    try:
        RedisWriter(client).write([Accepted("user", "u1", 1_700_000_000_000, {"amount": "1"})])
    finally:
        client.close()
    async with asyncio.timeout(5):  # the published invalidation reaches the gateway's LRU
        while (await stub.Predict(request(), metadata=AUTH)).cached:  # noqa: ASYNC110 - polling the answer
            await asyncio.sleep(0.02)
    assert len(upstreams.infer_requests) == 2
