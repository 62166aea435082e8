"""The prediction cache through the real gateway app and gRPC server, on a real Redis and on a
real Redis Cluster (`redis+cluster://`): the second identical Predict says `cached`, both are
logged (PredictionEvent.cached), an event written by the ingestion service's writer ends the
hits, and both give the same answers to the same requests (upstreams are in-process fakes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from predmesh.common.values import scalar_to_value
from predmesh.v1 import prediction_pb2, prediction_pb2_grpc
from services.gateway.app import GatewayApp
from services.gateway.settings import GatewaySettings
from tests.gateway.test_cache_cluster import ingest_write
from tests.gateway.transport.upstream_fakes import Upstreams

AUTH = (("x-api-key", "k"),)
# Real Redis and Redis Cluster (the `cache_url` fixture picks one at run time, so say it here).
pytestmark = pytest.mark.integration


@pytest.fixture
async def upstreams() -> AsyncIterator[Upstreams]:
    fakes = Upstreams()
    await fakes.start()
    yield fakes
    await fakes.stop()


@asynccontextmanager
async def serve(
    upstreams: Upstreams, cache_url: str, tmp_path: Path
) -> AsyncIterator[tuple[prediction_pb2_grpc.PredictionServiceStub, GatewayApp]]:
    """The gateway app with its shared cache level on `cache_url` (one Redis or a Redis Cluster)."""
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
        cache_redis_url=cache_url,
        cache_timeout_ms=1000,
        default_deadline_ms=10_000,  # these tests are about answers, not deadlines: room for a loaded box
    )
    app = GatewayApp(settings)
    await app.start()
    try:
        async with grpc.aio.insecure_channel(app.address) as channel:
            yield prediction_pb2_grpc.PredictionServiceStub(channel), app
    finally:
        await app.stop()


@pytest.fixture(params=["redis", "cluster"])
def cache_url(request: pytest.FixtureRequest) -> str:
    """A flushed single Redis (`redis://`) or Redis Cluster (`redis+cluster://`) of the session."""
    return str(request.getfixturevalue("redis_url" if request.param == "redis" else "redis_cluster_url"))


@pytest.fixture
async def stub(
    upstreams: Upstreams, cache_url: str, tmp_path: Path
) -> AsyncIterator[prediction_pb2_grpc.PredictionServiceStub]:
    async with serve(upstreams, cache_url, tmp_path) as (running, _):
        yield running


def request() -> prediction_pb2.PredictRequest:
    return prediction_pb2.PredictRequest(
        request_id="r1", model="fraud", entity_id="u1", context={"amount": scalar_to_value(250.0)}
    )


async def test_cached_answer_over_grpc_then_invalidated_by_ingest(
    stub: prediction_pb2_grpc.PredictionServiceStub, upstreams: Upstreams, cache_url: str
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

    await asyncio.to_thread(ingest_write, cache_url, "u1")  # the ingestion service's writer for that Redis
    async with asyncio.timeout(5):  # the published invalidation reaches the gateway's LRU
        while (await stub.Predict(request(), metadata=AUTH)).cached:  # noqa: ASYNC110 - polling the answer
            await asyncio.sleep(0.02)
    assert len(upstreams.infer_requests) == 2


async def test_same_answers_on_a_single_redis_and_on_a_cluster(
    upstreams: Upstreams, redis_url: str, redis_cluster_url: str, tmp_path: Path
) -> None:
    def ask(entity: str, amount: float) -> prediction_pb2.PredictRequest:
        return prediction_pb2.PredictRequest(
            request_id=f"{entity}-{amount}",
            model="fraud",
            entity_id=entity,
            context={"amount": scalar_to_value(amount)},
        )

    asks = [ask(f"u{i % 3}", 100.0 + i % 2) for i in range(12)]  # the last 6 repeat the first 6
    answers = {}
    for name, url in (("redis", redis_url), ("cluster", redis_cluster_url)):
        async with serve(upstreams, url, tmp_path) as (stub, app):
            firsts = await asyncio.gather(*(stub.Predict(a, metadata=AUTH) for a in asks[:6]))
            rest = [await stub.Predict(a, metadata=AUTH) for a in asks[6:]]
            fallbacks = app.metrics.registry.get_sample_value("predmesh_gateway_cache_cluster_fallbacks_total")
            assert fallbacks == (0.0 if name == "cluster" else None)  # exposed on a cluster only; none needed
        answers[name] = [(r.cached, r.model_version, r.prediction.score, r.prediction.label) for r in [*firsts, *rest]]
    assert answers["cluster"] == answers["redis"]
    assert [cached for cached, *_ in answers["redis"]] == [False] * 6 + [True] * 6
