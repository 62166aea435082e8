"""The demo models served by the inference service match ONNX Runtime and the native models."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from predmesh.demo import synth
from predmesh.demo.train import frame_columns
from predmesh.models.preprocess import Preprocessor
from predmesh.models.spec import ModelSpec
from predmesh.v1 import inference_pb2, inference_pb2_grpc
from services.inference.transport.converters import row_to_proto
from tests.demo.support import DemoModels

N_ROWS = 300


def reference_matrix(spec: ModelSpec, frame: pd.DataFrame) -> np.ndarray:
    """The model input built straight from the spec with pandas/numpy (independent of Preprocessor)."""
    blocks = []
    for item in spec.inputs:
        column = frame[item.name]
        t = item.transform
        if t.type == "identity":
            blocks.append(column.to_numpy(np.float64)[:, None])
        elif t.type == "log1p":
            blocks.append(np.log1p(column.to_numpy(np.float64))[:, None])
        elif t.type == "standardize":
            blocks.append(((column.to_numpy(np.float64) - t.mean) / t.std)[:, None])
        elif t.type == "bool":
            blocks.append(column.astype(float).to_numpy()[:, None])
        else:
            values = column.where(column.isin(t.categories), t.other) if t.other else column
            blocks.append(np.stack([(values == c).to_numpy(float) for c in t.categories], axis=1))
    return np.concatenate(blocks, axis=1).astype(np.float32)


@pytest.mark.parametrize("key", ["fraud:1", "fraud:2", "fraud_nn:1", "fraud_ctx:1"])
async def test_service_matches_onnxruntime_and_native_model(
    key: str, demo_models: DemoModels, stub: inference_pb2_grpc.InferenceServiceStub
) -> None:
    trained = demo_models.trained[key]
    spec = trained.spec
    frame = demo_models.holdout.head(N_ROWS)
    # Unknown categories exercise the "other" slot and the all-zeros encoding.
    frame = frame.assign(
        country=frame["country"].where(frame.index % 7 != 0, "ZZ"),
        channel=frame["channel"].where(frame.index % 11 != 0, "kiosk"),
    )
    matrix = reference_matrix(spec, frame)
    assert matrix.shape == (N_ROWS, spec.input_width)
    np.testing.assert_allclose(Preprocessor(spec).transform_columns(frame_columns(frame)), matrix, rtol=1e-6)

    session = ort.InferenceSession(
        str(demo_models.repo / spec.name / spec.version / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    ort_probs = session.run(["probabilities"], {"input": matrix})[0]
    native_probs = trained.estimator.predict_proba(matrix)

    names = list(synth.ALL_FEATURES)
    rows = [row_to_proto(r) for r in frame[names].itertuples(index=False, name=None)]
    reply = await stub.Infer(
        inference_pb2.InferRequest(model=spec.name, version=spec.version, feature_names=names, rows=rows)
    )
    assert reply.model_version == spec.version
    scores = np.array([list(p.scores) for p in reply.predictions])
    np.testing.assert_allclose(scores, ort_probs, atol=1e-6)
    np.testing.assert_allclose(scores, native_probs, atol=1e-4)
    np.testing.assert_allclose([p.score for p in reply.predictions], native_probs[:, 1], atol=1e-4)
    expected_labels = np.where(ort_probs[:, 1] >= 0.5, "fraud", "legit")
    assert [p.label for p in reply.predictions] == expected_labels.tolist()


async def test_unknown_category_changes_nothing_for_other_slot(
    stub: inference_pb2_grpc.InferenceServiceStub,
) -> None:
    names = list(synth.ALL_FEATURES)
    base: dict[str, Any] = {
        "account_age_days": 100.0,
        "txn_count_7d": 3,
        "avg_txn_amount_30d": 50.0,
        "chargeback_rate_90d": 0.0,
        "country": "other",
        "is_verified": True,
        "amount": 60.0,
        "hour_of_day": 12,
        "channel": "app",
    }
    rows = [row_to_proto([r[n] for n in names]) for r in (base, dict(base, country="Atlantis"))]
    try:
        reply = await stub.Infer(inference_pb2.InferRequest(model="fraud_nn", feature_names=names, rows=rows))
    except grpc.aio.AioRpcError as err:  # pragma: no cover - diagnostic
        pytest.fail(err.details() or "")
    a, b = reply.predictions
    assert a.score == pytest.approx(b.score, abs=1e-9)
