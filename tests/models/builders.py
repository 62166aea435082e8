"""Tiny purpose-built ONNX models and specs for failure-mode tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper, numpy_helper


def linear_onnx(
    weights: np.ndarray,
    bias: np.ndarray | None = None,
    softmax: bool = False,
    input_name: str = "input",
    output_name: str = "output",
    input_width: int | str | None = None,
) -> bytes:
    """y = x @ weights + bias (optionally softmax over axis 1). weights: [D, K]."""
    weights = np.asarray(weights, dtype=np.float32)
    k = weights.shape[1]
    bias = np.zeros(k, dtype=np.float32) if bias is None else np.asarray(bias, dtype=np.float32)
    width = weights.shape[0] if input_width is None else input_width
    nodes = [
        helper.make_node("MatMul", [input_name, "W"], ["xw"]),
        helper.make_node("Add", ["xw", "B"], ["logits" if softmax else output_name]),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], [output_name], axis=1))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", k])],
        initializer=[numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def regressor_spec(name: str = "tiny", version: str | int = "1", **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "version": version,
        "kind": "linear",
        "task": "regressor",
        "entity_type": "user",
        "inputs": [{"name": "amount", "transform": "identity"}],
        "onnx": {"input": "input", "output": "output"},
    }
    spec.update(overrides)
    return spec


def classifier_spec(name: str = "tinyclf", version: str | int = "1", **overrides: Any) -> dict[str, Any]:
    spec = regressor_spec(name, version, task="classifier", class_labels=["legit", "fraud"])
    spec["postprocess"] = {"positive_class": "fraud"}
    spec.update(overrides)
    return spec


def write_model(repo: Path, spec: dict[str, Any], onnx_bytes: bytes | None) -> Path:
    """Write <repo>/<name>/<version>/model.yaml (+ model.onnx unless None)."""
    target = repo / spec["name"] / str(spec["version"])
    target.mkdir(parents=True, exist_ok=True)
    (target / "model.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    if onnx_bytes is not None:
        (target / "model.onnx").write_bytes(onnx_bytes)
    return target
