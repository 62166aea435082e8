"""End to end: Predict through the real gateway, features (real Redis) and inference processes.

The reference for each score is computed independently of the gateway: the test reads the
entity's hash straight from Redis, applies the registry's parsing and the request context,
and asks the orchestrator directly. So these tests check that the gateway assembles the right
features and returns what the model says; tests/inference checks the model math itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import grpc
import pytest
import redis
import yaml

from predmesh.demo import FEATURE_REGISTRY
from predmesh.local.mesh import LocalMesh
from predmesh.v1 import (
    common_pb2,
    inference_pb2,
    inference_pb2_grpc,
    prediction_pb2,
    prediction_pb2_grpc,
)
from tests.common.prometheus_scrape import scrape
from tests.e2e.conftest import Observability

REGISTRY = yaml.safe_load(FEATURE_REGISTRY.read_text())["entities"]["user"]["features"]


def num(x: float) -> common_pb2.Value:
    return common_pb2.Value(number_value=x)


def text(x: str) -> common_pb2.Value:
    return common_pb2.Value(string_value=x)


def decoded(raw: bytes | str | None) -> str | None:
    """A value from a Redis client made with decode_responses=True: text, or None when absent."""
    assert not isinstance(raw, bytes), "the Redis client must decode responses"
    return raw


def registry_value(name: str, raw: str | None, context: dict[str, common_pb2.Value]) -> common_pb2.Value:
    """What the registry says the value of `name` is (context first, then Redis, else default)."""
    spec = REGISTRY[name]
    if name in context:
        return context[name]
    if raw is None:
        raw = str(spec["default"])
    if spec["dtype"] == "bool":
        return common_pb2.Value(bool_value=raw.lower() in ("1", "true"))
    if spec["dtype"] == "category":
        return text(raw)
    return num(float(raw))


@pytest.fixture
def inference_stub(mesh: LocalMesh) -> Iterator[inference_pb2_grpc.InferenceServiceStub]:
    assert mesh.inference is not None
    with mesh.internal_channel(mesh.inference.address) as channel:
        yield inference_pb2_grpc.InferenceServiceStub(channel)


def reference(
    mesh: LocalMesh,
    inference: inference_pb2_grpc.InferenceServiceStub,
    model: str,
    entity: str,
    context: dict[str, common_pb2.Value],
    version: str = "",
) -> inference_pb2.InferResponse:
    assert mesh.redis is not None
    info = inference.GetModel(inference_pb2.GetModelRequest(model=model, version=version))
    client = redis.Redis.from_url(mesh.redis.url, decode_responses=True)
    stored = client.hgetall(f"features:user:{entity}")
    client.close()
    row = [registry_value(f, decoded(stored.get(f)), context) for f in info.features]
    return inference.Infer(
        inference_pb2.InferRequest(
            model=model,
            version=info.version,
            feature_names=list(info.features),
            rows=[inference_pb2.Row(values=row)],
        )
    )


@pytest.mark.parametrize("model", ["fraud", "fraud_nn"])
def test_predict_returns_the_models_score(
    mesh: LocalMesh, stub: prediction_pb2_grpc.PredictionServiceStub, inference_stub, model: str
) -> None:
    context = {"amount": num(120.5), "channel": text("web"), "hour_of_day": num(3)}
    resp = stub.Predict(
        prediction_pb2.PredictRequest(model=model, entity_id="u00042", context=context, request_id="e2e-1"),
        timeout=10,
    )
    ref = reference(mesh, inference_stub, model, "u00042", context, resp.model_version)
    assert resp.request_id == "e2e-1" and resp.model == model and resp.entity_id == "u00042"
    assert resp.model_version == ref.model_version
    assert resp.prediction.score == pytest.approx(ref.predictions[0].score, abs=1e-9)
    assert 0.0 <= resp.prediction.score <= 1.0
    assert resp.prediction.label in ("legit", "fraud")
    assert not resp.degraded and list(resp.defaulted_features) == []
    assert resp.timings.total_ms >= resp.timings.features_ms > 0


def test_scores_differ_between_entities_and_contexts(stub: prediction_pb2_grpc.PredictionServiceStub) -> None:
    scores = {
        stub.Predict(
            prediction_pb2.PredictRequest(
                model="fraud", entity_id=entity, context={"amount": num(amount), "channel": text("web")}
            ),
            timeout=10,
        ).prediction.score
        for entity in ("u00001", "u00002", "u00003")
        for amount in (5.0, 5000.0)
    }
    assert len(scores) > 1


def test_version_pin(stub: prediction_pb2_grpc.PredictionServiceStub) -> None:
    for version in ("1", "2"):
        resp = stub.Predict(
            prediction_pb2.PredictRequest(model="fraud", version=version, entity_id="u00007"), timeout=10
        )
        assert resp.model_version == version and resp.arm == "pinned"


def test_an_entity_missing_from_the_store_is_scored_on_defaults_and_flagged_degraded(
    mesh: LocalMesh, stub: prediction_pb2_grpc.PredictionServiceStub, inference_stub
) -> None:
    # u99999 is not in Redis: every stored feature is defaulted, so the answer says so.
    resp = stub.Predict(
        prediction_pb2.PredictRequest(model="fraud", entity_id="u99999", context={"amount": num(5)}),
        timeout=10,
    )
    stored = {name for name, spec in REGISTRY.items() if spec["source"] == "store"}
    assert resp.degraded and resp.degraded_reason == "features_missing"
    assert set(resp.missing_features) == stored & set(resp.defaulted_features) and resp.missing_features
    assert {"account_age_days", "country", "is_verified", "hour_of_day", "channel"} <= set(resp.defaulted_features)
    assert resp.arm in ("stable", "canary")  # scored by the requested model, on the registered defaults
    defaults_only = reference(mesh, inference_stub, "fraud", "u99999", {"amount": num(5)}, resp.model_version)
    assert resp.prediction.score == pytest.approx(defaults_only.predictions[0].score, abs=1e-9)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (common_pb2.Value(string_value="abc"), "expected float"),
        (num(float("nan")), "not a finite number"),
        (num(float("inf")), "not a finite number"),
        (num(-5), "outside"),
    ],
)
def test_an_invalid_context_value_is_invalid_argument_naming_the_field(
    stub: prediction_pb2_grpc.PredictionServiceStub, value: common_pb2.Value, why: str
) -> None:
    request = prediction_pb2.PredictRequest(model="fraud", entity_id="u00042", context={"amount": value})
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    details = info.value.details()  # type: ignore[attr-defined]
    assert "'amount'" in details and why in details


def test_predict_batch_matches_single_predicts(stub: prediction_pb2_grpc.PredictionServiceStub) -> None:
    entities = [f"u{i:05d}" for i in range(10, 18)]
    ctx = {"amount": num(42.0)}
    batch = stub.PredictBatch(
        prediction_pb2.PredictBatchRequest(
            request_id="b-1",
            model="fraud_nn",
            items=[prediction_pb2.BatchItem(entity_id=e, context=ctx) for e in entities],
        ),
        timeout=10,
    )
    assert [r.entity_id for r in batch.results] == entities
    for result in batch.results:
        single = stub.Predict(
            prediction_pb2.PredictRequest(model="fraud_nn", entity_id=result.entity_id, context=ctx),
            timeout=10,
        )
        assert result.prediction.score == pytest.approx(single.prediction.score, abs=1e-9)


def burst(
    stub: prediction_pb2_grpc.PredictionServiceStub, requests: list[prediction_pb2.PredictRequest]
) -> list[prediction_pb2.PredictResponse]:
    pending = [stub.Predict.future(r, timeout=10) for r in requests]  # all in flight at once
    return [f.result() for f in pending]


def undegraded(
    stub: prediction_pb2_grpc.PredictionServiceStub, request: prediction_pb2.PredictRequest
) -> prediction_pb2.PredictResponse:
    for _ in range(6):
        resp = stub.Predict(request, timeout=10)
        if not resp.degraded:
            return resp
        time.sleep(0.5)  # a loaded machine made a dependency slow; its breaker recovers in 2 s
    raise AssertionError(f"{request.request_id}: still degraded ({resp.degraded_reason})")


@pytest.mark.parametrize("model", ["fraud", "fraud_nn"])
def test_coalesced_predicts_score_exactly_like_one_at_a_time(
    mesh: LocalMesh, stub: prediction_pb2_grpc.PredictionServiceStub, observability: Observability, model: str
) -> None:
    requests = [
        prediction_pb2.PredictRequest(
            model=model, entity_id=f"u{i:05d}", context={"amount": num(10.0 + i)}, request_id=f"c-{i}"
        )
        for i in range(60, 92)
    ]
    burst(stub, requests)  # warm up (connections, caches); a slow start may open a breaker
    time.sleep(2.5)  # BREAKER_RESET_MS is 2000: closed again
    rows = ("predmesh_gateway_batch_rows_sum", (("model", model), ("path", "primary")))
    batches = ("predmesh_gateway_batch_rows_count", (("model", model), ("path", "primary")))
    before = scrape(observability.metrics_ports["gateway"])
    together = burst(stub, requests)
    after = scrape(observability.metrics_ports["gateway"])
    assert [r.request_id for r in together] == [r.request_id for r in requests]
    sent_rows = after.get(rows, 0.0) - before.get(rows, 0.0)
    sent_batches = after.get(batches, 0.0) - before.get(batches, 0.0)
    assert sent_rows == len(requests) and sent_batches < len(requests)  # some requests shared a call
    # Degraded answers (dependency too slow on a loaded machine) are fallbacks, not scores to compare.
    scored = [(joint, request) for joint, request in zip(together, requests, strict=True) if not joint.degraded]
    assert scored, [r.degraded_reason for r in together][:3]
    for joint, request in scored:
        single = undegraded(stub, request)
        assert (joint.model_version, joint.arm) == (single.model_version, single.arm)
        assert joint.prediction == single.prediction  # to the last bit


@pytest.mark.parametrize(
    ("request_kwargs", "code"),
    [
        ({"model": "no_such_model", "entity_id": "u1"}, grpc.StatusCode.NOT_FOUND),
        ({"model": "fraud", "version": "99", "entity_id": "u1"}, grpc.StatusCode.NOT_FOUND),
        ({"model": "fraud", "entity_id": ""}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"model": "", "entity_id": "u1"}, grpc.StatusCode.INVALID_ARGUMENT),
        (
            {"model": "fraud", "entity_id": "u1", "context": {"no_such_feature": num(1)}},
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        ({"model": "fraud", "entity_id": "u1", "context": {"amount": common_pb2.Value()}}, None),
    ],
)
def test_bad_input_gets_a_clear_status(
    stub: prediction_pb2_grpc.PredictionServiceStub, request_kwargs: dict, code: grpc.StatusCode | None
) -> None:
    request = prediction_pb2.PredictRequest(**request_kwargs)
    if code is None:
        # A context value with no kind set is a caller error, reported precisely.
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(request, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert "amount" in info.value.details()  # type: ignore[attr-defined]
        return
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request, timeout=10)
    assert info.value.code() == code  # type: ignore[attr-defined]
    assert info.value.details()  # type: ignore[attr-defined]


def test_tiny_deadline_is_deadline_exceeded(stub: prediction_pb2_grpc.PredictionServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(prediction_pb2.PredictRequest(model="fraud", entity_id="u00001"), timeout=0.0005)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]


def test_predict_async_delivers_to_callback(mesh: LocalMesh) -> None:
    async def scenario() -> prediction_pb2.CallbackDelivery:
        received: asyncio.Queue[prediction_pb2.CallbackDelivery] = asyncio.Queue()

        class Callback(prediction_pb2_grpc.PredictionCallbackServicer):
            async def OnPrediction(self, request, context):
                await received.put(request)
                return prediction_pb2.CallbackAck()

        server = grpc.aio.server()
        prediction_pb2_grpc.add_PredictionCallbackServicer_to_server(Callback(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with mesh.gateway_channel(aio=True) as channel:
                gw = prediction_pb2_grpc.PredictionServiceStub(channel)
                accepted = await gw.PredictAsync(
                    prediction_pb2.PredictAsyncRequest(
                        request=prediction_pb2.PredictRequest(model="fraud", entity_id="u00005", request_id="async-1"),
                        callback_target=f"127.0.0.1:{port}",
                    ),
                    timeout=5,
                )
                assert accepted.request_id == "async-1"
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await gw.PredictAsync(
                        prediction_pb2.PredictAsyncRequest(
                            request=prediction_pb2.PredictRequest(model="fraud", entity_id="u1"),
                            callback_target="not a target",
                        ),
                        timeout=5,
                    )
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            return await asyncio.wait_for(received.get(), 10)
        finally:
            await server.stop(0)

    delivery = asyncio.run(scenario())
    assert delivery.request_id == "async-1" and not delivery.error_code
    assert delivery.response.model == "fraud" and 0.0 <= delivery.response.prediction.score <= 1.0
