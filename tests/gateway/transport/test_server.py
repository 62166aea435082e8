"""The gateway's transport through real grpc.aio servers: GatewayApp, PredictionServicer, API-key
metadata, the upstream clients, LoggerSink and async callbacks (upstreams are in-process fakes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from predmesh.common.values import scalar_to_value
from predmesh.v1 import prediction_pb2, prediction_pb2_grpc
from services.gateway.app import GatewayApp
from services.gateway.settings import GatewaySettings
from tests.gateway.transport.upstream_fakes import Upstreams

KEYS = {"fraud-key": ["fraud"], "admin-key": ["*"]}
AUTH = (("x-api-key", "fraud-key"),)


@pytest.fixture
async def upstreams() -> AsyncIterator[Upstreams]:
    fakes = Upstreams()
    await fakes.start()
    yield fakes
    await fakes.stop()


@pytest.fixture
async def gateway(upstreams: Upstreams) -> AsyncIterator[GatewayApp]:
    settings = GatewaySettings(
        port=0,
        grace_s=0.2,
        features_target=upstreams.address,
        inference_target=upstreams.address,
        logger_target=upstreams.address,
        api_keys=KEYS,
        callback_hosts=["127.0.0.1"],  # the fake callback server is on loopback: allowed explicitly (SSRF policy)
    )
    app = GatewayApp(settings)
    await app.start()
    yield app
    await app.stop()


@pytest.fixture
async def stub(gateway: GatewayApp) -> AsyncIterator[prediction_pb2_grpc.PredictionServiceStub]:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        yield prediction_pb2_grpc.PredictionServiceStub(channel)


def request(entity: str = "u1", amount: float | None = 250.0, model: str = "fraud") -> prediction_pb2.PredictRequest:
    context = {"amount": scalar_to_value(amount)} if amount is not None else {}
    return prediction_pb2.PredictRequest(request_id=f"r-{entity}", model=model, entity_id=entity, context=context)


async def test_predict_goes_through_features_and_inference(
    stub: prediction_pb2_grpc.PredictionServiceStub, upstreams: Upstreams
) -> None:
    response = await stub.Predict(request("u1", 250.0), metadata=AUTH, timeout=5)
    assert (response.request_id, response.model, response.entity_id) == ("r-u1", "fraud", "u1")
    assert response.prediction.score == pytest.approx(0.25)
    assert not response.degraded
    sent = upstreams.feature_requests[-1]
    assert sent.entity_type == "user" and list(sent.features) == ["amount"]
    assert [e.entity_id for e in sent.entities] == ["u1"]
    assert upstreams.infer_requests[-1].model == "fraud"


async def test_predict_batch_answers_every_item_in_order(
    stub: prediction_pb2_grpc.PredictionServiceStub,
) -> None:
    items = [
        prediction_pb2.BatchItem(entity_id=f"u{i}", context={"amount": scalar_to_value(100.0 * i)}) for i in range(1, 5)
    ]
    batch = prediction_pb2.PredictBatchRequest(request_id="b1", model="fraud", items=items)
    response = await stub.PredictBatch(batch, metadata=AUTH, timeout=5)
    assert [r.entity_id for r in response.results] == ["u1", "u2", "u3", "u4"]
    assert [r.prediction.score for r in response.results] == pytest.approx([0.1, 0.2, 0.3, 0.4])


@pytest.mark.parametrize(
    ("metadata", "model", "code"),
    [
        ((), "fraud", grpc.StatusCode.UNAUTHENTICATED),  # no key
        ((("x-api-key", "nope"),), "fraud", grpc.StatusCode.UNAUTHENTICATED),  # unknown key
        (AUTH, "other", grpc.StatusCode.PERMISSION_DENIED),  # key not allowed for the model
    ],
)
async def test_api_keys_are_enforced(
    stub: prediction_pb2_grpc.PredictionServiceStub, metadata: tuple[tuple[str, str], ...], model: str, code
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Predict(request(model=model), metadata=metadata, timeout=5)
    assert info.value.code() == code


async def test_bearer_authorization_metadata_is_accepted(stub: prediction_pb2_grpc.PredictionServiceStub) -> None:
    response = await stub.Predict(request(), metadata=(("authorization", "Bearer admin-key"),), timeout=5)
    assert response.model == "fraud"


async def test_unknown_model_is_not_found(stub: prediction_pb2_grpc.PredictionServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Predict(request(model="ghost"), metadata=(("x-api-key", "admin-key"),), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_features_down_without_fallback_is_unavailable(
    stub: prediction_pb2_grpc.PredictionServiceStub, upstreams: Upstreams
) -> None:
    upstreams.features_error = grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Predict(request(), metadata=AUTH, timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "127.0.0.1" not in (info.value.details() or "")  # no internal address to the caller


async def test_each_prediction_is_logged_through_the_logger_client(
    stub: prediction_pb2_grpc.PredictionServiceStub, upstreams: Upstreams
) -> None:
    await stub.Predict(request("u7", 300.0), metadata=AUTH, timeout=5)
    await asyncio.wait_for(upstreams.event_arrived.wait(), 10)
    event = upstreams.events[0]
    assert (event.request_id, event.model, event.entity_id) == ("r-u7", "fraud", "u7")
    assert event.prediction.score == pytest.approx(0.3)
    assert event.arm == "stable" and not event.degraded


async def test_predict_async_delivers_to_the_callback(
    stub: prediction_pb2_grpc.PredictionServiceStub, upstreams: Upstreams
) -> None:
    accepted = await stub.PredictAsync(
        prediction_pb2.PredictAsyncRequest(request=request("u9", 900.0), callback_target=upstreams.address),
        metadata=AUTH,
        timeout=5,
    )
    assert accepted.request_id
    await asyncio.wait_for(upstreams.delivered.wait(), 10)
    delivery = upstreams.deliveries[0]
    assert delivery.request_id == accepted.request_id
    assert delivery.response.prediction.score == pytest.approx(0.9) and not delivery.error_code


async def test_predict_async_without_request_is_invalid(stub: prediction_pb2_grpc.PredictionServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.PredictAsync(prediction_pb2.PredictAsyncRequest(callback_target="x:1"), metadata=AUTH, timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
