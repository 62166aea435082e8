"""Service outputs vs. independent references: ORT on a hand-built matrix and the native models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from predmesh.demo import synth
from predmesh.demo.train import ensure_demo_models, frame_columns
from predmesh.v1 import inference_pb2, inference_pb2_grpc
from services.inference.core.preprocess import Preprocessor
from services.inference.core.registry import ModelRegistry
from services.inference.core.spec import ModelSpec, load_spec
from services.inference.transport.converters import row_to_proto
from services.inference.triton.layout import triton_layout_present
from services.monitor.core.reference import load_reference, psi

from ..conftest import DemoModels

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


def test_specs_on_disk_carry_metrics_and_validate(demo_models: DemoModels) -> None:
    registry = ModelRegistry.from_directory(demo_models.repo)
    assert [str(mv) for mv in registry.all()] == ["fraud:1", "fraud:2", "fraud_ctx:1", "fraud_ens:1", "fraud_nn:1"]
    ens = registry.get("fraud_ens")
    assert ens.is_ensemble and {p.name for p in ens.path.iterdir()} == {"model.yaml", "reference.json"}  # no ONNX
    assert registry.features(ens) == tuple(synth.ALL_FEATURES)
    assert 0.7 < ens.spec.metadata["holdout_auc"] <= 1.0
    for mv in registry.all():
        if mv.is_ensemble:
            continue
        spec = load_spec(mv.path / "model.yaml")
        assert spec.class_labels == ("legit", "fraud") and spec.postprocess.positive_class == "fraud"
        assert spec.entity_type == "user"
        if spec.name == "fraud_ctx":
            # The fallback model sees request-time features only: weaker, but real signal.
            assert spec.feature_names == tuple(synth.REQUEST_FEATURES)
            assert 0.6 < spec.metadata["holdout_auc"] < 0.75
        else:
            assert spec.feature_names == tuple(synth.ALL_FEATURES)
            assert 0.7 < spec.metadata["holdout_auc"] <= 1.0
        assert {p.name for p in mv.path.iterdir()} == {"model.onnx", "model.yaml", "reference.json"}
    nn = registry.get("fraud_nn").spec
    assert {i.transform.type for i in nn.inputs} == {"standardize", "onehot", "bool"}
    assert {i.transform.type for i in registry.get("fraud", "2").spec.inputs} >= {"log1p", "identity"}
    ctx = registry.get("fraud_ctx").spec
    assert (ctx.kind, ctx.input_width) == ("logistic", 2 + len(synth.CHANNELS))


def test_ensure_demo_models_skips_when_present(demo_models: DemoModels, tmp_path: Path) -> None:
    import shutil

    repo = tmp_path / "repo"
    shutil.copytree(demo_models.repo, repo)

    def stamps() -> dict[Path, int]:
        return {p: p.stat().st_mtime_ns for pattern in ("model.onnx", "model.yaml") for p in repo.rglob(pattern)}

    before = stamps()
    assert ensure_demo_models(repo) == repo
    assert stamps() == before  # not retrained...
    assert triton_layout_present(repo)  # ...but the missing Triton configs were written


def test_training_is_deterministic(demo_models: DemoModels, tmp_path: Path) -> None:
    """A fresh `ensure_demo_models` run reproduces the session's models byte for byte."""
    ensure_demo_models(tmp_path)
    for key in demo_models.trained:
        name, version = key.split(":")
        for file in ("model.yaml",) if name == "fraud_ens" else ("model.onnx", "model.yaml"):
            assert (tmp_path / name / version / file).read_bytes() == (
                demo_models.repo / name / version / file
            ).read_bytes(), f"{key} {file} differs"


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


def test_every_version_gets_a_drift_reference_of_its_holdout_scores(demo_models: DemoModels) -> None:
    """reference.json: the monitor's PSI baseline (holdout scores + numeric inputs), next to each model."""
    holdout = demo_models.holdout
    for key, trained in demo_models.trained.items():
        name, version = key.split(":")
        ref = load_reference(demo_models.repo / name / version)
        assert ref is not None, key
        assert ref.score.count == len(holdout)
        numeric = {i.name for i in trained.spec.inputs if i.name in ("amount", "account_age_days", "hour_of_day")}
        assert numeric <= set(ref.features), (key, sorted(ref.features))
        assert "country" not in ref.features and "is_verified" not in ref.features  # strings/bools skipped
    # The holdout itself is stable against its reference; a shifted population is flagged.
    fraud = load_reference(demo_models.repo / "fraud" / "1")
    assert fraud is not None
    amount = fraud.features["amount"]
    same = psi(amount.fractions, amount.counts(holdout["amount"].astype(float)))
    shifted = psi(amount.fractions, amount.counts(holdout["amount"].astype(float) * 3.0))
    assert same < 0.01 < 0.25 < shifted
