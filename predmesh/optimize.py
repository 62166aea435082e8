"""`predmesh optimize MODEL --version V --to int8|fp16`: an optimized variant as a new version.

Reads `<repo>/<MODEL>/<V>/` (model.onnx + model.yaml), writes `<repo>/<MODEL>/<V'>/`
with V' = highest version + 1 (staged in a hidden directory, then renamed into place,
so a running orchestrator's hot reload never sees a half-written version), and prints a
report comparing the variant with its source on the demo holdout:

- `--to int8`: ONNX Runtime quantization (`onnxruntime.quantization`). `--method
  dynamic` (default): weights INT8, activations quantized at run time (MatMul/Gemm);
  `--method static`: activations calibrated on a sample of the demo training data
  (`--calibration-rows`, QDQ format). Tree ensembles (XGBoost -> `TreeEnsembleClassifier`)
  have no MatMul/Gemm: quantization cannot change them, and the command says so and
  writes nothing (exit 2) instead of shipping a copy.
- `--to fp16`: float16 weights/activations with float32 inputs/outputs kept
  (`onnxconverter_common.float16`, ops ONNX Runtime CPU lacks in fp16 are blocked), for
  GPUs; the version's `tensorrt.pbtxt` holds the Triton optimization block that runs it
  with TensorRT FP16 (a config only: no GPU here). The spec says `device: gpu`.
- Report: file size, latency per row at batch 1 and 32 (ONNX Runtime, one intra-op
  thread, median of repeated runs), agreement with the source on the holdout (max and
  mean |score difference|, label agreement at the spec's threshold, AUC of both).

Ship the variant as a canary through the routing table (docs/BENCHMARKS.md shows it):
`versions: [{version: "1", weight: 95}, {version: "3", weight: 5}]`.

Blocking (files, ONNX Runtime); tooling, not a service.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import yaml

from predmesh.models.postprocess import Postprocessor
from predmesh.models.preprocess import Preprocessor
from predmesh.models.registry import ModelRegistry, ModelVersion
from predmesh.models.spec import ONNX_FILE, SPEC_FILE, ModelSpec, parse_spec

QUANTIZED_OPS = {"MatMulInteger", "DynamicQuantizeLinear", "QLinearMatMul", "QuantizeLinear", "ConvInteger"}
TREE_OPS = {"TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble"}

TENSORRT_CONFIG = """# Triton optimization for this FP16 variant (merge into config.pbtxt; needs a GPU + TensorRT)
optimization {
  execution_accelerators {
    gpu_execution_accelerator: [
      { name: "tensorrt"
        parameters { key: "precision_mode" value: "FP16" }
        parameters { key: "max_workspace_size_bytes" value: "1073741824" } }
    ]
  }
}
"""


class NotApplicable(Exception):
    """The requested optimization cannot change this model (e.g. INT8 on a tree ensemble)."""


@dataclass(frozen=True)
class Side:
    version: str
    size_bytes: int
    us_per_row_batch1: float
    us_per_row_batch32: float
    auc: float


@dataclass(frozen=True)
class Report:
    model: str
    source: Side
    variant: Side
    to: str
    method: str
    holdout_rows: int
    max_abs_score_diff: float
    mean_abs_score_diff: float
    label_agreement: float

    def text(self) -> str:
        s, v = self.source, self.variant
        return "\n".join(
            [
                f"{self.model}:{v.version} = {self.to} ({self.method}) of {self.model}:{s.version}",
                f"  size            {s.size_bytes:>10,d} B -> {v.size_bytes:>10,d} B "
                f"({v.size_bytes / s.size_bytes:.2f}x)",
                f"  us/row batch 1  {s.us_per_row_batch1:>10.1f}   -> {v.us_per_row_batch1:>10.1f}",
                f"  us/row batch 32 {s.us_per_row_batch32:>10.1f}   -> {v.us_per_row_batch32:>10.1f}",
                f"  AUC             {s.auc:>10.4f}   -> {v.auc:>10.4f}",
                f"  holdout {self.holdout_rows} rows: max |score diff| {self.max_abs_score_diff:.5f}, "
                f"mean {self.mean_abs_score_diff:.5f}, label agreement {self.label_agreement:.4%}",
            ]
        )


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _us_per_row(
    session: ort.InferenceSession, spec: ModelSpec, matrix: np.ndarray, batch: int, budget_s: float
) -> float:
    """Median time per row over repeated runs of `batch` rows (bounded by `budget_s`)."""
    feed = {spec.onnx.input: np.ascontiguousarray(matrix[:batch])}
    for _ in range(5):
        session.run([spec.onnx.output], feed)
    times: list[float] = []
    stop = time.perf_counter() + budget_s
    while time.perf_counter() < stop or len(times) < 20:
        start = time.perf_counter()
        session.run([spec.onnx.output], feed)
        times.append(time.perf_counter() - start)
    return statistics.median(times) / batch * 1e6


def _quantizable(model: onnx.ModelProto) -> bool:
    ops = {node.op_type for node in model.graph.node}
    return bool(ops & {"MatMul", "Gemm", "Conv"})


def holdout_matrix(spec: ModelSpec, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(holdout matrix, holdout labels 0/1, training-sample matrix) from the demo data."""
    from predmesh.demo.train import demo_dataset, frame_columns

    train, holdout = demo_dataset(seed)
    pre = Preprocessor(spec)
    matrix = pre.transform_columns(frame_columns(holdout), len(holdout))
    calib = train.head(2000)
    return matrix, holdout["label"].to_numpy().astype(int), pre.transform_columns(frame_columns(calib), len(calib))


def _int8(src: Path, dst: Path, method: str, spec: ModelSpec, calibration: np.ndarray) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    model = onnx.load(str(src))
    if not _quantizable(model):
        kinds = sorted({n.op_type for n in model.graph.node} & TREE_OPS) or ["no MatMul/Gemm/Conv"]
        raise NotApplicable(
            f"INT8 quantization does not apply to {spec.name}:{spec.version} ({', '.join(kinds)}): ONNX Runtime "
            "quantizes MatMul/Gemm/Conv weights and activations; a tree ensemble has none (quantize an MLP "
            "such as fraud_nn instead)"
        )
    if method == "dynamic":
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
        return

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(np.array_split(calibration, max(1, len(calibration) // 64)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {spec.onnx.input: np.ascontiguousarray(batch, dtype=np.float32)}

    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )


def _drop_identity_casts(model: onnx.ModelProto) -> onnx.ModelProto:
    """Bypass Cast-to-float nodes on float graph inputs (skl2onnx writes them): the fp16 converter
    keeps their `to=FLOAT`, which would feed float32 into fp16 MatMuls."""
    floats = {i.name for i in model.graph.input if i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    rename: dict[str, str] = {}
    keep = []
    for node in model.graph.node:
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if node.op_type == "Cast" and to == onnx.TensorProto.FLOAT and node.input[0] in floats:
            rename[node.output[0]] = node.input[0]
            continue
        keep.append(node)
    for node in keep:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return model


def _fp16(src: Path, dst: Path) -> None:
    from onnxconverter_common import float16

    model = _drop_identity_casts(onnx.load(str(src)))
    converted = float16.convert_float_to_float16(model, keep_io_types=True)
    onnx.save(converted, str(dst))


def _scores(session: ort.InferenceSession, mv: ModelVersion, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    spec = mv.spec
    raw = session.run([spec.onnx.output], {spec.onnx.input: matrix})[0]
    predictions = Postprocessor(spec, str(mv))(raw, len(matrix))
    return np.array([p.score for p in predictions]), np.array([p.label for p in predictions])


def _side(
    version: str, path: Path, mv: ModelVersion, matrix: np.ndarray, labels: np.ndarray, budget_s: float
) -> tuple[Side, np.ndarray, np.ndarray]:
    from sklearn.metrics import roc_auc_score

    session = _session(path)
    scores, predicted = _scores(session, mv, matrix)
    side = Side(
        version=version,
        size_bytes=path.stat().st_size,
        us_per_row_batch1=_us_per_row(session, mv.spec, matrix, 1, budget_s),
        us_per_row_batch32=_us_per_row(session, mv.spec, matrix, 32, budget_s),
        auc=float(roc_auc_score(labels, scores)),
    )
    return side, scores, predicted


def optimize(
    repo: Path, model: str, version: str, to: str, method: str = "dynamic", seed: int = 0, bench_s: float = 1.0
) -> Report:
    """Write the variant as a new version of `model` and return the comparison (see module docstring)."""
    registry = ModelRegistry.from_directory(repo)
    source = registry.get(model, version)
    if source.is_ensemble:
        raise NotApplicable(f"{source} is an ensemble: optimize its members")
    spec = source.spec
    new_version = str(max(int(v) for v in registry.versions(model)) + 1)
    matrix, labels, calibration = holdout_matrix(spec, seed)
    model_dir = repo / model
    staging = Path(tempfile.mkdtemp(prefix=f".{new_version}-", dir=model_dir))
    try:
        dst = staging / ONNX_FILE
        if to == "int8":
            _int8(source.onnx_path, dst, method, spec, calibration)
        elif to == "fp16":
            method = "float16"
            _fp16(source.onnx_path, dst)
            (staging / "tensorrt.pbtxt").write_text(TENSORRT_CONFIG)
        else:
            raise ValueError(f"unknown target {to!r} (int8 or fp16)")
        data: dict[str, Any] = yaml.safe_load(source.spec_path.read_text())
        data["version"] = new_version
        data["description"] = f"{to} ({method}) of {model}:{version}. " + str(data.get("description") or "")
        if to == "fp16":
            data["device"] = "gpu"
        variant_spec = parse_spec(data, f"{model}:{new_version}")
        (staging / SPEC_FILE).write_text(
            f"# predmesh optimize --to {to} of {model}:{version}\n{variant_spec.to_yaml()}"
        )
        variant = ModelVersion(variant_spec, staging)
        src_side, src_scores, src_labels = _side(version, source.onnx_path, source, matrix, labels, bench_s)
        dst_side, dst_scores, dst_labels = _side(new_version, dst, variant, matrix, labels, bench_s)
        diff = np.abs(src_scores - dst_scores)
        report = Report(
            model=model,
            source=src_side,
            variant=dst_side,
            to=to,
            method=method,
            holdout_rows=len(matrix),
            max_abs_score_diff=float(diff.max()),
            mean_abs_score_diff=float(diff.mean()),
            label_agreement=float((src_labels == dst_labels).mean()),
        )
        (staging / "optimize_report.json").write_text(json.dumps(asdict(report), indent=2))
        staging.rename(model_dir / new_version)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    if (model_dir / "config.pbtxt").exists():  # a Triton layout: give the new version its model.py/config
        from services.inference.triton.layout import write_triton_layout

        write_triton_layout(repo)
    return report


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("optimize", help="write an INT8/FP16 variant of a model version as a new version")
    p.add_argument("model")
    p.add_argument("--version", required=True, help="source version")
    p.add_argument("--to", required=True, choices=["int8", "fp16"])
    p.add_argument("--method", default="dynamic", choices=["dynamic", "static"], help="int8 quantization method")
    p.add_argument("--repo", type=Path, default=Path(".predmesh/models"), help="model repository")
    p.add_argument("--bench-s", type=float, default=1.0, help="seconds of latency measurement per batch size")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_optimize)


def cmd_optimize(args: argparse.Namespace) -> int:
    try:
        report = optimize(args.repo, args.model, args.version, args.to, args.method, bench_s=args.bench_s)
    except NotApplicable as err:
        print(f"not applicable: {err}")
        return 2
    print(json.dumps(asdict(report), indent=2) if args.json else report.text())
    return 0
