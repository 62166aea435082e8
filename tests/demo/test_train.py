"""Demo training (predmesh/demo/train.py): specs, determinism, drift references."""

from __future__ import annotations

from pathlib import Path

from predmesh.demo import synth
from predmesh.demo.train import ensure_demo_models
from predmesh.models.registry import ModelRegistry
from predmesh.models.spec import load_spec
from services.inference.triton.layout import triton_layout_present
from services.monitor.core.reference import load_reference, psi
from tests.demo.support import DemoModels

N_ROWS = 300


def test_specs_on_disk_carry_metrics_and_validate(demo_models: DemoModels) -> None:
    registry = ModelRegistry.from_directory(demo_models.repo)
    assert [str(mv) for mv in registry.all()] == [
        "fraud:1",
        "fraud:2",
        "fraud:3",
        "fraud_ctx:1",
        "fraud_ens:1",
        "fraud_nn:1",
    ]
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
        elif (spec.name, spec.version) == ("fraud", "3"):
            # Two registry groups: the user's features and the transaction's merchant's.
            assert spec.feature_names == (*synth.ALL_FEATURES, *synth.MERCHANT_FEATURES)
            assert 0.7 < spec.metadata["holdout_auc"] <= 1.0
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
