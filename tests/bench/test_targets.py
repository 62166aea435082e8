"""Benchmark targets count a fallback (degraded) answer as DEGRADED, never as OK throughput."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from bench import loadgen
from bench.targets import DEGRADED, make_predict, make_predict_batch
from predmesh.v1 import prediction_pb2, prediction_pb2_grpc


class _Gateway(prediction_pb2_grpc.PredictionServiceServicer):
    """Every other call is degraded; PredictBatch degrades one item of the batch."""

    def __init__(self) -> None:
        self.calls = 0

    def _next_degraded(self) -> bool:
        self.calls += 1
        return self.calls % 2 == 0

    async def Predict(self, request: prediction_pb2.PredictRequest, context: Any) -> prediction_pb2.PredictResponse:
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
async def gateway() -> AsyncIterator[str]:
    server = grpc.aio.server()
    prediction_pb2_grpc.add_PredictionServiceServicer_to_server(_Gateway(), server)
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
