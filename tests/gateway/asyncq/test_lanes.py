"""Priority lanes through a real gateway server: under overload a batch-class key is refused with
RESOURCE_EXHAUSTED and a retry hint while real-time calls are still served; a request cannot ask
for a more urgent class than its key's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from predmesh.common.values import scalar_to_value
from predmesh.v1 import jobs_pb2, prediction_pb2, prediction_pb2_grpc
from services.gateway.app import GatewayApp
from services.gateway.settings import GatewaySettings
from tests.gateway.asyncq.support import HoldingUpstreams

KEYS = {"rt-key": {"models": ["fraud"]}, "bulk-key": {"models": ["fraud"], "priority": "batch"}}


@pytest.fixture
async def stub(upstreams: HoldingUpstreams) -> AsyncIterator[prediction_pb2_grpc.PredictionServiceStub]:
    settings = GatewaySettings(
        port=0,
        grace_s=0.2,
        features_target=upstreams.address,
        inference_target=upstreams.address,
        logger_target=upstreams.address,
        api_keys=KEYS,
        max_inflight=2,  # batch lane: 1 in flight, async: 1, real-time: 2
        coalesce_max_rows=1,
        overload_retry_after_ms=300,
    )
    app = GatewayApp(settings)
    await app.start()
    async with grpc.aio.insecure_channel(app.address) as channel:
        yield prediction_pb2_grpc.PredictionServiceStub(channel)
    await app.stop()


def call(entity: str, priority: int = 0) -> prediction_pb2.PredictRequest:
    return prediction_pb2.PredictRequest(
        model="fraud",
        entity_id=entity,
        context={"amount": scalar_to_value(100.0)},
        priority=priority,  # type: ignore[arg-type]
    )


async def test_batch_is_refused_under_overload_while_realtime_is_served(
    stub: prediction_pb2_grpc.PredictionServiceStub, upstreams: HoldingUpstreams
) -> None:
    upstreams.hold.clear()  # inference hangs: requests stay in flight
    first = asyncio.ensure_future(stub.Predict(call("u1"), metadata=(("x-api-key", "rt-key"),), timeout=10))
    await asyncio.wait_for(upstreams.infer_started.wait(), 5)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Predict(call("u2"), metadata=(("x-api-key", "bulk-key"),), timeout=5)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "retry after 300 ms" in (refused.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as lowered:  # a real-time key asking for the batch lane
        await stub.Predict(call("u3", jobs_pb2.PRIORITY_BATCH), metadata=(("x-api-key", "rt-key"),), timeout=5)
    assert lowered.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    second = asyncio.ensure_future(stub.Predict(call("u4"), metadata=(("x-api-key", "rt-key"),), timeout=10))
    await asyncio.sleep(0.2)
    assert not second.done()  # admitted (waiting on inference), not refused
    upstreams.hold.set()
    answers = await asyncio.gather(first, second)
    assert [a.entity_id for a in answers] == ["u1", "u4"]
    # Idle again: the batch key is served.
    served = await stub.Predict(call("u5"), metadata=(("x-api-key", "bulk-key"),), timeout=5)
    assert served.entity_id == "u5"


async def test_a_request_cannot_raise_its_keys_class(stub: prediction_pb2_grpc.PredictionServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Predict(call("u1", jobs_pb2.PRIORITY_REALTIME), metadata=(("x-api-key", "bulk-key"),), timeout=5)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_polling_without_the_durable_queue_is_a_failed_precondition(
    stub: prediction_pb2_grpc.PredictionServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetPrediction(
            jobs_pb2.GetPredictionRequest(request_id="x"), metadata=(("x-api-key", "rt-key"),), timeout=5
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_the_prediction_log_records_the_class_served(
    stub: prediction_pb2_grpc.PredictionServiceStub, upstreams: HoldingUpstreams
) -> None:
    await stub.Predict(call("u1"), metadata=(("x-api-key", "bulk-key"),), timeout=5)  # key default: batch
    await stub.Predict(call("u2"), metadata=(("x-api-key", "rt-key"),), timeout=5)
    await stub.PredictBatch(
        prediction_pb2.PredictBatchRequest(
            model="fraud",
            items=[prediction_pb2.BatchItem(entity_id="u3", context={"amount": scalar_to_value(1.0)})],
            priority=jobs_pb2.PRIORITY_ASYNC,
        ),
        metadata=(("x-api-key", "rt-key"),),
        timeout=5,
    )
    for _ in range(100):
        if len(upstreams.events) >= 3:
            break
        await asyncio.sleep(0.05)
    by_entity = {e.entity_id: e.priority for e in upstreams.events}
    assert by_entity == {"u1": jobs_pb2.PRIORITY_BATCH, "u2": jobs_pb2.PRIORITY_REALTIME, "u3": jobs_pb2.PRIORITY_ASYNC}
