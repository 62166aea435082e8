"""Through a real grpc.aio server on a free port, so the shared ErrorInterceptor runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from predmesh.demo import synth
from predmesh.v1 import inference_pb2, inference_pb2_grpc
from services.inference.app import SERVICE_NAME, InferenceApp
from services.inference.transport.converters import row_to_proto

from ...models.builders import classifier_spec, linear_onnx, regressor_spec, write_model
from ..conftest import DemoModels, make_settings

Stub = inference_pb2_grpc.InferenceServiceStub
FEATURES = list(synth.ALL_FEATURES)
USER_ONLY = "2"  # the highest fraud version on user features only
ROW: dict[str, Any] = {
    "account_age_days": 30.0,
    "txn_count_7d": 14,
    "avg_txn_amount_30d": 40.0,
    "chargeback_rate_90d": 0.2,
    "country": "BR",
    "is_verified": False,
    "amount": 900.0,
    "hour_of_day": 3,
    "channel": "web",
}


def request(
    rows: Sequence[dict[str, Any]], model: str = "fraud", version: str | None = None, names: Sequence[str] = FEATURES
):
    if version is None:  # fraud's default (highest) version, fraud:3, also reads merchant features
        version = USER_ONLY if model == "fraud" else ""
    return inference_pb2.InferRequest(
        request_id="r1",
        model=model,
        version=version,
        feature_names=list(names),
        rows=[row_to_proto([row.get(n) for n in names]) for row in rows],
    )


async def expect_error(call: Any, code: grpc.StatusCode, *fragments: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    details = info.value.details() or ""
    for fragment in fragments:
        assert fragment in details
    return details


async def test_infer_default_and_pinned_versions(stub: Stub) -> None:
    legit = dict(
        ROW,
        chargeback_rate_90d=0.0,
        is_verified=True,
        country="US",
        amount=20.0,
        hour_of_day=14,
        account_age_days=900.0,
        channel="pos",
    )
    # The default is the highest version: fraud:3, which also reads the merchant group.
    shop = {"merchant.risk_score": 0.1, "merchant.category": "grocery"}
    names = [*FEATURES, *synth.MERCHANT_FEATURES]
    response = await stub.Infer(request([ROW | shop, legit | shop], version="", names=names))
    assert response.model == "fraud"
    assert response.model_version == "3"
    risky, safe = response.predictions
    assert risky.score > safe.score
    assert len(risky.scores) == 2 and risky.scores[1] == pytest.approx(risky.score)
    assert risky.label == ("fraud" if risky.score >= 0.5 else "legit")
    assert safe.label == "legit"
    pinned = await stub.Infer(request([ROW], version="1"))
    assert pinned.model_version == "1"
    assert pinned.predictions[0].score != pytest.approx(risky.score, abs=1e-9)


async def test_feature_order_in_the_request_does_not_matter(stub: Stub) -> None:
    forward = await stub.Infer(request([ROW], model="fraud_nn"))
    backward = await stub.Infer(request([ROW], model="fraud_nn", names=[*reversed(FEATURES), "unused"]))
    assert forward.predictions[0].score == pytest.approx(backward.predictions[0].score, abs=1e-7)


async def test_large_requests_are_offloaded_and_agree(stub: Stub, demo_models: DemoModels) -> None:
    rows = demo_models.holdout.head(200)[FEATURES].to_dict("records")
    big = await stub.Infer(request(rows))  # offload_rows=64 in the fixture
    small = [await stub.Infer(request(rows[i : i + 50])) for i in range(0, 200, 50)]
    np.testing.assert_allclose(
        [p.score for p in big.predictions], [p.score for r in small for p in r.predictions], atol=1e-7
    )


async def test_list_and_get_models(stub: Stub) -> None:
    listed = await stub.ListModels(inference_pb2.ListModelsRequest())
    assert [(m.name, m.version, list(m.versions)) for m in listed.models] == [
        ("fraud", "3", ["1", "2", "3"]),
        ("fraud_ctx", "1", ["1"]),
        ("fraud_ens", "1", ["1"]),
        ("fraud_nn", "1", ["1"]),
    ]
    ens = await stub.GetModel(inference_pb2.GetModelRequest(model="fraud_ens"))
    assert (ens.kind, ens.task, list(ens.features)) == ("ensemble", "classifier", list(FEATURES))
    info = await stub.GetModel(inference_pb2.GetModelRequest(model="fraud", version="1"))
    assert info == inference_pb2.ModelInfo(
        name="fraud",
        versions=["1", "2", "3"],
        version="1",
        task="classifier",
        entity_type="user",
        features=FEATURES,
        class_labels=["legit", "fraud"],
        kind="xgboost",
    )
    nn = await stub.GetModel(inference_pb2.GetModelRequest(model="fraud_nn"))
    assert (nn.kind, nn.version) == ("mlp", "1")


async def test_unknown_model_and_version_are_not_found(stub: Stub) -> None:
    nf = grpc.StatusCode.NOT_FOUND
    await expect_error(stub.Infer(request([ROW], model="nope")), nf, "unknown model 'nope'")
    await expect_error(stub.Infer(request([ROW], version="9")), nf, "no version '9'")
    await expect_error(stub.GetModel(inference_pb2.GetModelRequest(model="nope")), nf, "unknown model")
    await expect_error(stub.GetModel(inference_pb2.GetModelRequest(model="fraud", version="4")), nf, "no version")


async def test_invalid_requests(stub: Stub) -> None:
    bad = grpc.StatusCode.INVALID_ARGUMENT
    names_without_amount = [n for n in FEATURES if n != "amount"]
    await expect_error(stub.Infer(request([ROW], names=names_without_amount)), bad, "missing required feature 'amount'")
    await expect_error(stub.Infer(request([dict(ROW, amount="lots")])), bad, "'amount'", "string value")
    await expect_error(stub.Infer(request([dict(ROW, is_verified=1.0)])), bad, "'is_verified'", "expected a bool")
    await expect_error(stub.Infer(request([ROW, dict(ROW, country=None)])), bad, "'country': row 1 has no value")
    await expect_error(stub.Infer(request([])), bad, "no rows")
    await expect_error(stub.Infer(request([ROW] * 501)), bad, "501 rows exceed the limit of 500")
    short = request([ROW])
    short.rows[0].values.pop()
    await expect_error(stub.Infer(short), bad, "row 0 has 8 values, expected 9")


async def test_health_reports_serving(demo_app: InferenceApp) -> None:
    async with grpc.aio.insecure_channel(demo_app.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_tiny_models_end_to_end_and_broken_output_is_internal(tmp_path: Path) -> None:
    # Regressor: y = 2*a - b + 1 with log1p on a, clipped to [0, 5].
    write_model(
        tmp_path,
        regressor_spec(
            inputs=[{"name": "a", "transform": "log1p"}, {"name": "b"}],
            postprocess={"clip_min": 0.0, "clip_max": 5.0},
        ),
        linear_onnx(np.array([[2.0], [-1.0]]), bias=np.array([1.0])),
    )
    # Classifier whose model emits 3 columns for 2 class labels: a broken deployment.
    write_model(tmp_path, classifier_spec(), linear_onnx(np.ones((1, 3)), softmax=True))
    app = InferenceApp(make_settings(tmp_path))
    await app.start()
    try:
        async with grpc.aio.insecure_channel(app.address) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            reply = await stub.Infer(
                inference_pb2.InferRequest(
                    model="tiny",
                    feature_names=["b", "a"],
                    rows=[row_to_proto([0.5, np.e - 1]), row_to_proto([10.0, 0.0]), row_to_proto([0, 1e6])],
                )
            )
            assert [p.score for p in reply.predictions] == pytest.approx([2.5, 0.0, 5.0], abs=1e-5)
            assert all(p.label == "" and len(p.scores) == 0 for p in reply.predictions)
            details = await expect_error(
                stub.Infer(
                    inference_pb2.InferRequest(model="tinyclf", feature_names=["amount"], rows=[row_to_proto([1.0])])
                ),
                grpc.StatusCode.INTERNAL,
                "tinyclf:1",
                "expected [N, 2] class probabilities",
            )
            assert "Traceback" not in details
    finally:
        await app.stop()


async def test_start_fails_cleanly_on_a_model_that_cannot_load(tmp_path: Path) -> None:
    write_model(tmp_path, regressor_spec(), linear_onnx(np.ones((2, 1))))  # spec says 1 column
    app = InferenceApp(make_settings(tmp_path))
    with pytest.raises(Exception, match="has width 2"):
        await app.start()
    await app.stop()  # safe after a failed start


def test_value_conversion_roundtrip() -> None:
    from predmesh.models.preprocess import FeatureValue
    from services.inference.transport.converters import rows_from_proto

    values: list[FeatureValue] = [1.5, "x", True, False, None, 3]
    (back,) = rows_from_proto([row_to_proto(values)])
    assert back == values
    assert [type(v) for v in back] == [float, str, bool, bool, type(None), float]


async def test_ensemble_equals_weighted_average_of_members(stub: Stub, demo_models: DemoModels) -> None:
    """fraud_ens:1 through the server == 0.5 * fraud:1 + 0.5 * fraud_nn:1, each scored on its own."""
    frame = demo_models.holdout.head(40)
    rows = [row_to_proto(list(r)) for r in frame[FEATURES].itertuples(index=False, name=None)]

    async def scores(model: str, version: str) -> np.ndarray:
        reply = await stub.Infer(
            inference_pb2.InferRequest(model=model, version=version, feature_names=FEATURES, rows=rows), timeout=5
        )
        assert reply.model_version == version
        return np.array([p.scores for p in reply.predictions])

    ens, xgb, mlp = await scores("fraud_ens", "1"), await scores("fraud", "1"), await scores("fraud_nn", "1")
    np.testing.assert_allclose(ens, 0.5 * xgb + 0.5 * mlp, atol=1e-6)
    reply = await stub.Infer(
        inference_pb2.InferRequest(model="fraud_ens", feature_names=FEATURES, rows=rows[:3]), timeout=5
    )
    assert [p.label for p in reply.predictions] == ["fraud" if s >= 0.5 else "legit" for s in ens[:3, 1]]
    missing = [n for n in FEATURES if n != "country"]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Infer(
            inference_pb2.InferRequest(model="fraud_ens", feature_names=missing, rows=[row_to_proto([1.0] * 8)]),
            timeout=5,
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "country" in (info.value.details() or "")
