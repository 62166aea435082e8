"""Many small demo models: one logistic regression per segment (`segment_000` ... `segment_199`).

A platform serving one model per tenant/region/segment has hundreds of small models and
a few hot ones. `write_segment_models(repo, n)` trains one logistic regression
per segment of the demo transactions (segment = bootstrap sample of the
training split drawn with the segment's seed, so every model differs) on the numeric
features, and writes it as `<repo>/segment_<i>/1/` (model.onnx built directly with
onnx.helper: MatMul + Add + Sigmoid -> [N, 2] probabilities; model.yaml with log1p /
identity transforms like the demo models). A few ms per model (Newton steps in numpy).

Used by the model-pool benchmark (bench/model_pool.py) and `python -m
predmesh.demo.segments REPO --count 200`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper, numpy_helper

from predmesh.demo.train import demo_dataset, frame_columns
from predmesh.models.preprocess import Preprocessor
from predmesh.models.spec import ONNX_FILE, SPEC_FILE, parse_spec

FEATURES = ["account_age_days", "txn_count_7d", "avg_txn_amount_30d", "chargeback_rate_90d", "amount", "hour_of_day"]
LOG1P = {"account_age_days", "txn_count_7d", "avg_txn_amount_30d", "amount"}


def segment_name(i: int) -> str:
    return f"segment_{i:03d}"


def _spec(name: str) -> dict[str, object]:
    return {
        "name": name,
        "version": "1",
        "kind": "linear",
        "task": "classifier",
        "entity_type": "user",
        "description": "per-segment logistic regression (predmesh.demo.segments)",
        "class_labels": ["legit", "fraud"],
        "inputs": [{"name": f, "transform": "log1p" if f in LOG1P else "identity"} for f in FEATURES],
        "onnx": {"input": "input", "output": "probabilities"},
        "postprocess": {"positive_class": "fraud", "threshold": 0.5},
    }


def _onnx(coef: np.ndarray, intercept: float) -> bytes:
    w = coef.reshape(-1, 1).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["input", "W"], ["z0"]),
        helper.make_node("Add", ["z0", "B"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["p"]),
        helper.make_node("Sub", ["one", "p"], ["q"]),
        helper.make_node("Concat", ["q", "p"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "segment_lr",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", len(w)])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])],
        initializer=[
            numpy_helper.from_array(w, "W"),
            numpy_helper.from_array(np.array([intercept], dtype=np.float32), "B"),
            numpy_helper.from_array(np.array([1.0], dtype=np.float32), "one"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    return model.SerializeToString()


def _fit_logistic(x: np.ndarray, y: np.ndarray, steps: int = 8, l2: float = 1.0) -> tuple[np.ndarray, float]:
    """L2-regularized logistic regression by Newton's method (a few ms for thousands of rows)."""
    xb = np.hstack([np.asarray(x, dtype=np.float64), np.ones((len(x), 1))])
    theta = np.zeros(xb.shape[1])
    reg = l2 * np.eye(xb.shape[1])
    reg[-1, -1] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(xb @ theta)))
        grad = xb.T @ (p - y) + reg @ theta
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + reg
        theta -= np.linalg.solve(hess, grad)
    return theta[:-1], float(theta[-1])


def write_segment_models(repo: Path, count: int = 200, rows: int = 2000, seed: int = 0) -> list[str]:
    """Train and write `count` segment models (blocking); returns their names."""
    train, _ = demo_dataset(seed)
    spec = parse_spec(_spec(segment_name(0)), "segment spec")
    matrix = Preprocessor(spec).transform_columns(frame_columns(train), len(train))
    labels = train["label"].to_numpy().astype(int)
    names = []
    for i in range(count):
        rng = np.random.default_rng(seed * 100_003 + i)
        pick = rng.integers(0, len(train), rows)
        coef, intercept = _fit_logistic(matrix[pick], labels[pick])
        name = segment_name(i)
        target = repo / name / "1"
        target.mkdir(parents=True, exist_ok=True)
        (target / ONNX_FILE).write_bytes(_onnx(coef, intercept))
        (target / SPEC_FILE).write_text(yaml.safe_dump(_spec(name), sort_keys=False))
        names.append(name)
    onnx.checker.check_model(onnx.load(str(repo / names[0] / "1" / ONNX_FILE)))
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path)
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args(argv)
    names = write_segment_models(args.repo, args.count)
    print(f"wrote {len(names)} segment models into {args.repo}")


if __name__ == "__main__":
    main()
