"""Benchmark targets count a fallback (degraded) answer as DEGRADED, never as OK throughput."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from bench import loadgen
from bench.targets import DEGRADED, make_predict, make_predict_batch, make_predict_cache_mix
from predmesh.v1 import prediction_pb2, prediction_pb2_grpc


class _Gateway(prediction_pb2_grpc.PredictionServiceServicer):
    """Every other call is degraded; PredictBatch degrades one item of the batch."""

    def __init__(self) -> None:
        self.calls = 0
        self.requests: list[prediction_pb2.PredictRequest] = []

    def _next_degraded(self) -> bool:
        self.calls += 1
        return self.calls % 2 == 0

    async def Predict(self, request: prediction_pb2.PredictRequest, context: Any) -> prediction_pb2.PredictResponse:
        self.requests.append(request)
        return prediction_pb2.PredictResponse(model=request.model, degraded=self._next_degraded())

    async def PredictBatch(
        self, request: prediction_pb2.PredictBatchRequest, context: Any
    ) -> prediction_pb2.PredictBatchResponse:
        degraded = self._next_degraded()
        results = [
            prediction_pb2.PredictResponse(model=request.model, degraded=degraded and i == len(request.items) - 1)
            for i in range(len(request.items))
        ]
        return prediction_pb2.PredictBatchResponse(results=results)


@pytest.fixture
async def servicer() -> _Gateway:
    return _Gateway()


@pytest.fixture
async def gateway(servicer: _Gateway) -> AsyncIterator[str]:
    server = grpc.aio.server()
    prediction_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


async def test_predict_and_batch_targets_tell_degraded_from_ok(gateway: str) -> None:
    single = await make_predict(gateway, "fraud")
    batch = await make_predict_batch(gateway, "fraud", batch_size=8)
    try:
        assert [await single.call() for _ in range(4)] == [loadgen.OK, DEGRADED] * 2
        # Calls 5..8: the even ones carry one degraded item, which is enough.
        assert [await batch.call() for _ in range(4)] == [loadgen.OK, DEGRADED] * 2
    finally:
        await single.close()
        await batch.close()


async def test_cache_mix_sends_the_hot_set_then_repeats_it_at_the_hit_ratio(gateway: str, servicer: _Gateway) -> None:
    target = await make_predict_cache_mix(gateway, "fraud", hit_ratio=0.9, hot=20, seed=3)
    try:
        for _ in range(20 + 1000):
            await target.call()
    finally:
        await target.close()
    keys = [r.SerializeToString(deterministic=True) for r in servicer.requests]
    hot, mix = keys[:20], keys[20:]
    assert len(set(hot)) == 20  # the warm-up sends each hot request once
    repeats = sum(k in set(hot) for k in mix)
    assert 850 < repeats < 950  # ~90% of the rest repeat one of them...
    assert len(set(mix) - set(hot)) == len(mix) - repeats  # ...and every other request is new (a miss)
