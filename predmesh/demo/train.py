"""Train the demo models on `predmesh.demo.synth` data and write them to a model repository.

Models (all entity_type `user`, class_labels [legit, fraud], score = P(fraud)):
  fraud:1     XGBoost classifier -> ONNX (onnxmltools); numbers as-is, one-hot categories
  fraud:2     XGBoost with other hyper-parameters and seed, log1p on amounts (canary material)
  fraud_nn:1  scikit-learn MLPClassifier -> ONNX (skl2onnx); standardized numbers
  fraud_ctx:1 scikit-learn LogisticRegression -> ONNX (skl2onnx) on the request-time
              features only (amount, hour_of_day, channel): the gateway's fallback model
              when the feature store is down
  fraud_ens:1 ensemble (no ONNX): weighted average 0.5/0.5 of fraud:1 and fraud_nn:1
              (members on different backends when Triton is configured)
  fraud:3     XGBoost on the user features plus the transaction's merchant (`merchant.risk_score`,
              `merchant.category`: registry group `merchant`, read in the same round trip; callers
              send `entities: {merchant: <id>}`), trained on `synth.with_merchants` data. Not in
              the demo routing's arms: pin version 3 to call it.

The input matrix is built by the serving `Preprocessor` from each model's spec, so
training and serving cannot drift apart. Everything is seeded and single-process:
the same seed gives the same models. Needs the `train` extra (xgboost, scikit-learn,
onnxmltools, skl2onnx). `python -m predmesh.demo.train [repo_dir]` trains.
Training also writes the Triton configs (services/inference/triton/layout.py).
Each version also gets `reference.json` (services/monitor/core/reference.py): the
holdout's score distribution and its numeric input features, which the drift monitor
compares live traffic against (PSI).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd

from predmesh.demo import synth
from predmesh.models.preprocess import Column, Preprocessor
from predmesh.models.spec import ONNX_FILE, SPEC_FILE, ModelSpec, parse_spec
from services.inference.triton.layout import triton_layout_present, write_triton_layout
from services.monitor.core.reference import FILENAME as REFERENCE_FILE
from services.monitor.core.reference import Reference, compute_reference, save_reference

log = logging.getLogger(__name__)

CLASS_LABELS = ["legit", "fraud"]
NUMERIC = [
    "account_age_days",
    "txn_count_7d",
    "avg_txn_amount_30d",
    "chargeback_rate_90d",
    "amount",
    "hour_of_day",
]
DEMO_MODELS = [
    ("fraud", "1"),
    ("fraud", "2"),
    ("fraud_nn", "1"),
    ("fraud_ctx", "1"),
    ("fraud_ens", "1"),
    ("fraud", "3"),
]
TARGET_OPSET = 15
_THREADS = 2


@dataclass(frozen=True)
class TrainedModel:
    """A trained demo model: its spec, the ONNX bytes and the native estimator.

    `estimator.predict_proba(matrix)` on `Preprocessor(spec)`'s matrix is the reference
    the ONNX export must match.
    """

    spec: ModelSpec
    onnx_bytes: bytes
    estimator: Any
    reference: Reference | None = None  # holdout score/feature distributions (reference.json)


def demo_dataset(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, holdout) transactions with all registry features and `label`; 80/20 split."""
    frame = synth.transactions(synth.users(), n=20000, seed=11 + seed)
    order = np.random.default_rng(seed).permutation(len(frame))
    cut = int(len(frame) * 0.8)
    return frame.iloc[order[:cut]].reset_index(drop=True), frame.iloc[order[cut:]].reset_index(drop=True)


def frame_columns(frame: pd.DataFrame) -> dict[str, Column]:
    """Feature columns (user and, when present, merchant) as plain Python scalars, as the service receives them."""
    return {name: frame[name].tolist() for name in (*synth.ALL_FEATURES, *synth.MERCHANT_FEATURES) if name in frame}


def _categorical(name: str, categories: list[str], other: str | None) -> dict[str, Any]:
    transform: dict[str, Any] = {"type": "onehot", "categories": categories}
    if other is not None:
        transform["other"] = other
    return {"name": name, "transform": transform}


def _inputs(numeric: Callable[[str], Any]) -> list[dict[str, Any]]:
    """Spec inputs in registry order; `numeric(name)` gives each number's transform."""
    inputs: list[dict[str, Any]] = []
    for name in synth.ALL_FEATURES:
        if name == "country":
            inputs.append(_categorical(name, synth.COUNTRIES, "other"))
        elif name == "channel":
            inputs.append(_categorical(name, synth.CHANNELS, None))  # unknown channel -> all zeros
        elif name == "is_verified":
            inputs.append({"name": name, "transform": "bool"})
        else:
            inputs.append({"name": name, "transform": numeric(name)})
    return inputs


def _spec(
    name: str, version: str, kind: str, inputs: list[dict[str, Any]], description: str, device: str = "cpu"
) -> ModelSpec:
    return parse_spec(
        {
            "name": name,
            "device": device,
            "version": version,
            "kind": kind,
            "task": "classifier",
            "entity_type": "user",
            "description": description,
            "class_labels": CLASS_LABELS,
            "inputs": inputs,
            "onnx": {"input": "input", "output": "probabilities"},
            "postprocess": {"positive_class": "fraud", "threshold": 0.5},
        },
        f"demo {name}:{version}",
    )


def _xgboost(spec: ModelSpec, matrix: np.ndarray, labels: np.ndarray, seed: int, **params: Any) -> TrainedModel:
    import xgboost
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    model = xgboost.XGBClassifier(tree_method="hist", n_jobs=_THREADS, random_state=seed, **params)
    model.fit(matrix, labels)
    onx = convert_xgboost(
        model, initial_types=[("input", FloatTensorType([None, spec.input_width]))], target_opset=TARGET_OPSET
    )
    onx.graph.name = f"{spec.name}_{spec.version}"  # the converter names graphs with a random uuid
    return TrainedModel(spec=spec, onnx_bytes=onx.SerializeToString(), estimator=model)


def _mlp(spec: ModelSpec, matrix: np.ndarray, labels: np.ndarray, seed: int) -> TrainedModel:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(hidden_layer_sizes=(32, 16), alpha=1e-3, max_iter=60, early_stopping=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(matrix, labels)
    return _sklearn_trained(spec, model)


def _logistic(spec: ModelSpec, matrix: np.ndarray, labels: np.ndarray, seed: int) -> TrainedModel:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0, max_iter=500, random_state=seed)
    model.fit(matrix, labels)
    return _sklearn_trained(spec, model)


def _sklearn_trained(spec: ModelSpec, model: Any) -> TrainedModel:
    """A fitted sklearn classifier exported to ONNX (probabilities as a plain tensor, no zipmap)."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = to_onnx(
        model,
        initial_types=[("input", FloatTensorType([None, spec.input_width]))],
        options={id(model): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    return TrainedModel(spec=spec, onnx_bytes=onx.SerializeToString(), estimator=model)


def _context_inputs() -> list[dict[str, Any]]:
    """Inputs of the fallback model: request-time features only, in registry order."""
    inputs: list[dict[str, Any]] = []
    for name in synth.REQUEST_FEATURES:
        if name == "channel":
            inputs.append(_categorical(name, synth.CHANNELS, None))
        elif name == "amount":
            inputs.append({"name": name, "transform": "log1p"})
        else:
            inputs.append({"name": name, "transform": "identity"})
    return inputs


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def _ensemble_spec() -> ModelSpec:
    return parse_spec(
        {
            "name": "fraud_ens",
            "version": "1",
            "kind": "ensemble",
            "task": "classifier",
            "entity_type": "user",
            "description": "Weighted average (0.5/0.5) of fraud:1 (XGBoost) and fraud_nn:1 (MLP)",
            "class_labels": CLASS_LABELS,
            "ensemble": {
                "members": [
                    {"model": "fraud", "version": "1", "weight": 0.5},
                    {"model": "fraud_nn", "version": "1", "weight": 0.5},
                ],
                "combine": "weighted_average",
            },
            "postprocess": {"positive_class": "fraud", "threshold": 0.5},
        },
        "demo fraud_ens:1",
    )


def _holdout_probs(trained: TrainedModel, holdout: pd.DataFrame) -> np.ndarray:
    spec = trained.spec
    matrix = Preprocessor(spec).transform_columns(frame_columns(holdout), len(holdout))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(trained.onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"])
    probs: np.ndarray = session.run([spec.onnx.output], {spec.onnx.input: matrix})[0]
    return probs


def _ensemble(by_key: dict[str, TrainedModel], holdout: pd.DataFrame, train_rows: int, seed: int) -> TrainedModel:
    """fraud_ens:1, with its holdout AUC from its members' exported ONNX models."""
    spec = _ensemble_spec()
    assert spec.ensemble is not None
    total = sum(m.weight for m in spec.ensemble.members)
    probs = sum(m.weight * _holdout_probs(by_key[f"{m.model}:{m.version}"], holdout) for m in spec.ensemble.members)
    scores = np.asarray(probs)[:, spec.positive_index] / total
    auc = _auc(holdout["label"].to_numpy(), scores)
    log.info("ensemble fraud_ens:1: holdout AUC %.4f", auc)
    metadata = {"holdout_auc": round(auc, 4), "train_rows": train_rows, "holdout_rows": len(holdout), "seed": seed}
    members = {i.name for m in spec.ensemble.members for i in by_key[f"{m.model}:{m.version}"].spec.inputs}
    return TrainedModel(
        spec=spec.model_copy(update={"metadata": metadata}),
        onnx_bytes=b"",
        estimator=None,
        reference=_reference(scores, holdout, sorted(members)),
    )


def _reference(scores: np.ndarray, holdout: pd.DataFrame, features: list[str]) -> Reference:
    """Holdout distributions of the positive-class score and of each numeric input feature."""
    columns = {
        name: holdout[name].astype(float).tolist()
        for name in features
        if name in holdout and pd.api.types.is_numeric_dtype(holdout[name]) and holdout[name].dtype != bool
    }
    return compute_reference([float(v) for v in scores], columns)


def _with_metrics(trained: TrainedModel, holdout: pd.DataFrame, train_rows: int, seed: int) -> TrainedModel:
    """Score the holdout with the exported ONNX model (not the estimator) and record AUC."""
    spec = trained.spec
    probs = _holdout_probs(trained, holdout)
    auc = _auc(holdout["label"].to_numpy(), probs[:, spec.positive_index])
    log.info(
        "trained %s:%s (%s): holdout AUC %.4f on %d rows",
        spec.name,
        spec.version,
        spec.kind,
        auc,
        len(holdout),
    )
    metadata = {
        "holdout_auc": round(auc, 4),
        "train_rows": train_rows,
        "holdout_rows": len(holdout),
        "seed": seed,
        "data": "predmesh.demo.synth",
    }
    spec = spec.model_copy(update={"metadata": metadata})
    reference = _reference(probs[:, spec.positive_index], holdout, [i.name for i in spec.inputs])
    return TrainedModel(spec=spec, onnx_bytes=trained.onnx_bytes, estimator=trained.estimator, reference=reference)


def train_models(seed: int = 0) -> list[TrainedModel]:
    """Train fraud:1, fraud:2, fraud_nn:1, fraud_ctx:1, fraud:3 and define fraud_ens:1 (deterministic for a seed)."""
    train, holdout = demo_dataset(seed)
    columns = frame_columns(train)
    labels = train["label"].to_numpy()
    stats = {name: (float(train[name].mean()), float(train[name].std()) or 1.0) for name in NUMERIC}

    def matrix(spec: ModelSpec) -> np.ndarray:
        return Preprocessor(spec).transform_columns(columns, len(train))

    fraud1 = _spec("fraud", "1", "xgboost", _inputs(lambda _: "identity"), "XGBoost on raw features")
    fraud2 = _spec(
        "fraud",
        "2",
        "xgboost",
        _inputs(lambda n: "log1p" if n in ("amount", "avg_txn_amount_30d", "account_age_days") else "identity"),
        "XGBoost, deeper and slower-learning, log1p amounts (canary candidate)",
    )
    nn = _spec(
        "fraud_nn",
        "1",
        "mlp",
        _inputs(lambda n: {"type": "standardize", "mean": round(stats[n][0], 6), "std": round(stats[n][1], 6)}),
        "MLP (32, 16) on standardized features",
        device="gpu",  # the demo's GPU-pool model: served by Triton when a Triton target is configured
    )
    ctx = _spec(
        "fraud_ctx",
        "1",
        "logistic",
        _context_inputs(),
        "Logistic regression on request-time features only (fallback when the feature store is down)",
    )
    models = [
        _xgboost(fraud1, matrix(fraud1), labels, seed, n_estimators=120, max_depth=4, learning_rate=0.1),
        _xgboost(
            fraud2,
            matrix(fraud2),
            labels,
            seed + 1,
            n_estimators=200,
            max_depth=5,
            learning_rate=0.05,
            subsample=0.8,
            colsample_bytree=0.8,
        ),
        _mlp(nn, matrix(nn), labels, seed),
        _logistic(ctx, matrix(ctx), labels, seed),
    ]
    trained = [_with_metrics(m, holdout, len(train), seed) for m in models]
    by_key = {f"{t.spec.name}:{t.spec.version}": t for t in trained}
    return [*trained, _ensemble(by_key, holdout, len(train), seed), _two_groups(train, holdout, seed)]


def _two_groups(train: pd.DataFrame, holdout: pd.DataFrame, seed: int) -> TrainedModel:
    """fraud:3: user + merchant features (two registry groups, one GetFeatures round trip)."""
    shops = synth.merchants()
    train = synth.with_merchants(train, shops, seed=17 + seed)
    holdout = synth.with_merchants(holdout, shops, seed=19 + seed)
    inputs = [
        *_inputs(lambda _: "identity"),
        {"name": "merchant.risk_score", "transform": "identity"},
        _categorical("merchant.category", synth.MERCHANT_CATEGORIES, "other"),
    ]
    spec = _spec("fraud", "3", "xgboost", inputs, "XGBoost on user and merchant features (two groups)")
    matrix = Preprocessor(spec).transform_columns(frame_columns(train), len(train))
    labels = train["label"].to_numpy()
    model = _xgboost(spec, matrix, labels, seed + 2, n_estimators=120, max_depth=4, learning_rate=0.1)
    return _with_metrics(model, holdout, len(train), seed)


def write_model(repo_dir: Path, trained: TrainedModel) -> Path:
    """Write `<repo>/<name>/<version>/{model.onnx,model.yaml,reference.json}` atomically; returns the version dir."""
    spec = trained.spec
    model_dir = repo_dir / spec.name
    model_dir.mkdir(parents=True, exist_ok=True)
    target = model_dir / spec.version
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.version}-", dir=model_dir))
    try:
        if not spec.is_ensemble:
            (staging / ONNX_FILE).write_bytes(trained.onnx_bytes)
        body = spec.to_yaml()
        (staging / SPEC_FILE).write_text(f"# predmesh model spec, written by predmesh.demo.train\n{body}")
        if trained.reference is not None:
            save_reference(trained.reference, staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def train_demo_models(repo_dir: Path, seed: int = 0) -> list[str]:
    """Train every demo model and write it to `repo_dir`; returns ["fraud:1", ...]."""
    repo_dir = Path(repo_dir)
    written = []
    for trained in train_models(seed):
        write_model(repo_dir, trained)
        written.append(f"{trained.spec.name}:{trained.spec.version}")
    write_triton_layout(repo_dir)
    log.info("wrote demo models %s (and their Triton configs) to %s", ", ".join(written), repo_dir)
    return written


def demo_models_present(repo_dir: Path) -> bool:
    return all(
        (repo_dir / name / version / SPEC_FILE).is_file()
        and (repo_dir / name / version / REFERENCE_FILE).is_file()
        and (name == "fraud_ens" or (repo_dir / name / version / ONNX_FILE).is_file())
        for name, version in DEMO_MODELS
    )


def ensure_demo_models(repo_dir: Path) -> Path:
    """Train the demo models into `repo_dir` unless they are all there already; returns `repo_dir`."""
    repo_dir = Path(repo_dir)
    if demo_models_present(repo_dir):
        log.debug("demo models already in %s", repo_dir)
        if not triton_layout_present(repo_dir):
            write_triton_layout(repo_dir)
        return repo_dir
    repo_dir.mkdir(parents=True, exist_ok=True)
    train_demo_models(repo_dir)
    return repo_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the predmesh demo models into a model repository.")
    parser.add_argument("repo_dir", nargs="?", default="models", type=Path, help="model repository directory")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument("--force", action="store_true", help="retrain even when the models exist")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.force or not demo_models_present(args.repo_dir):
        names = train_demo_models(args.repo_dir, seed=args.seed)
        print(f"trained {', '.join(names)} into {args.repo_dir}")
    else:
        print(f"demo models already present in {args.repo_dir} (use --force to retrain)")


if __name__ == "__main__":
    main()
