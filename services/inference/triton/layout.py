"""Write Triton model configs next to our models: `write_triton_layout(repo)`.

For each model `<repo>/<name>/` (every version with a `model.yaml`) it writes:

- `<name>/config.pbtxt` — production, for the official Triton container:
  `backend: "onnxruntime"`, `instance_group KIND_GPU`, `dynamic_batching`, every version
  served (`version_policy all`), and (optionally) the TensorRT execution accelerator
  with FP16 on the CUDA execution provider.
- `<name>/configs/cpu_local.pbtxt` — local/CI (`tritonserver --model-config-name=cpu_local`):
  `backend: "python"`, `KIND_CPU`, the same tensors and batching; each
  `<name>/<version>/model.py` (a copy of `python_model.py`) runs the version's
  `model.onnx` with ONNX Runtime on CPU.

An ensemble (`kind: ensemble`, no model.onnx) gets a Triton-native ensemble config
(`platform: "ensemble"`, the same text in both files) that runs its plain members
in one call: input `<member>_<version>__<input>` per member, output
`<member>_<version>__<output>` per member; the weighting/stacking stays in the
orchestrator, which runs members itself. This keeps the directory loadable by
tritonserver (which refuses to start on a model directory it cannot load). Nested
ensembles are not written (warning).

Tensor names and widths come from the spec (`onnx.input`/`onnx.output`,
`input_width`); the output width from the ONNX graph. Versions of one model with
different widths get a variable dim (-1). Idempotent; blocking file I/O (call it from
a thread in async code). The predmesh registry ignores all of these files.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from predmesh.models.registry import ModelRegistry, ModelVersion, scan_repository

log = logging.getLogger(__name__)

CPU_LOCAL = "cpu_local"
PYTHON_MODEL = Path(__file__).with_name("python_model.py")


@dataclass(frozen=True)
class TritonOptions:
    """Batching and placement written into the configs."""

    max_batch_size: int = 256
    max_queue_delay_us: int = 1000
    gpu_instances: int = 1
    cpu_instances: int = 1
    tensorrt: bool = True  # production: TensorRT EP (FP16) on GPU, CUDA EP fallback


def _output_dims(mv: ModelVersion) -> list[int]:
    """Output dims without the batch dim, from the ONNX graph (-1 when symbolic)."""
    # Imported here: only writing a layout needs the `onnx` package (train extra); the serving
    # image reads configs (read_model_config) and must start without it.
    import onnx

    graph = onnx.load(str(mv.onnx_path), load_external_data=False).graph
    for out in graph.output:
        if out.name == mv.spec.onnx.output:
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in out.type.tensor_type.shape.dim]
            return dims[1:] or [1]
    raise ValueError(f"model {mv}: output {mv.spec.onnx.output!r} not in the ONNX graph")


def _merge(values: list[list[int]]) -> list[int]:
    first = values[0]
    if all(v == first for v in values):
        return first
    return [-1] * len(first) if all(len(v) == len(first) for v in values) else [-1]


def render_config(name: str, versions: list[ModelVersion], options: TritonOptions, local: bool) -> str:
    """config.pbtxt text for `name` (production when `local` is false, else cpu_local)."""
    spec = versions[-1].spec
    in_dims = _merge([[mv.spec.input_width] for mv in versions])
    out_dims = _merge([_output_dims(mv) for mv in versions])
    lines = [
        f"# Written by services.inference.triton.layout for {name} "
        f"(versions {', '.join(mv.version for mv in versions)}).",
        f'name: "{name}"',
    ]
    if local:
        lines += [
            "# Local/CI config: tritonserver --model-config-name=cpu_local (python backend, CPU).",
            'backend: "python"',
        ]
    else:
        lines += [
            "# Production config for the official Triton container (ONNX Runtime backend on GPU).",
            'backend: "onnxruntime"',
        ]
    lines += [
        f"max_batch_size: {options.max_batch_size}",
        "version_policy: { all {} }",
        "input [",
        f'  {{ name: "{spec.onnx.input}" data_type: TYPE_FP32 dims: {in_dims} }}',
        "]",
        "output [",
        f'  {{ name: "{spec.onnx.output}" data_type: TYPE_FP32 dims: {out_dims} }}',
        "]",
        f"dynamic_batching {{ max_queue_delay_microseconds: {options.max_queue_delay_us} }}",
    ]
    if local:
        lines += [
            f"instance_group [ {{ kind: KIND_CPU count: {options.cpu_instances} }} ]",
            'parameters { key: "intra_op_threads" value: { string_value: "1" } }',
        ]
    else:
        lines.append(f"instance_group [ {{ kind: KIND_GPU count: {options.gpu_instances} }} ]")
        if options.tensorrt:
            lines += [
                "optimization { execution_accelerators {",
                '  gpu_execution_accelerator: [ { name: "tensorrt"',
                '    parameters { key: "precision_mode" value: "FP16" }',
                '    parameters { key: "max_workspace_size_bytes" value: "1073741824" } } ]',
                "} }",
            ]
    return "\n".join(lines) + "\n"


def render_ensemble_config(mv: ModelVersion, members: list[ModelVersion], options: TritonOptions) -> str:
    """Triton-native ensemble config running `members` (plain models) side by side."""
    ins, outs, steps = [], [], []
    for m in members:
        prefix = f"{m.name}_{m.version}__"
        spec = m.spec
        ins.append(f'  {{ name: "{prefix}{spec.onnx.input}" data_type: TYPE_FP32 dims: [{spec.input_width}] }}')
        outs.append(f'  {{ name: "{prefix}{spec.onnx.output}" data_type: TYPE_FP32 dims: {_output_dims(m)} }}')
        steps += [
            f'  {{ model_name: "{m.name}" model_version: {m.version}',
            f'    input_map {{ key: "{spec.onnx.input}" value: "{prefix}{spec.onnx.input}" }}',
            f'    output_map {{ key: "{spec.onnx.output}" value: "{prefix}{spec.onnx.output}" }} }}',
        ]
    lines = [
        f"# Written by services.inference.triton.layout for ensemble {mv} (members run side by side;",
        "# predmesh combines their outputs in the orchestrator).",
        f'name: "{mv.name}"',
        'platform: "ensemble"',
        f"max_batch_size: {options.max_batch_size}",
        "input [",
        ",\n".join(ins),
        "]",
        "output [",
        ",\n".join(outs),
        "]",
        "ensemble_scheduling { step [",
        *[line + ("," if line.endswith("} }") and i < len(steps) - 1 else "") for i, line in enumerate(steps)],
        "] }",
    ]
    return "\n".join(lines) + "\n"


def _write_ensemble(repo: Path, registry: ModelRegistry, versions: list[ModelVersion], options: TritonOptions) -> bool:
    mv = versions[-1]
    members = registry.members(mv)
    if len(versions) > 1 or any(m.is_ensemble for m in members):
        log.warning("no Triton config for ensemble %s: only one version of plain members is supported", mv)
        return False
    text = render_ensemble_config(mv, members, options)
    model_dir = repo / mv.name
    (model_dir / "config.pbtxt").write_text(text)
    (model_dir / "configs").mkdir(exist_ok=True)
    (model_dir / "configs" / f"{CPU_LOCAL}.pbtxt").write_text(text)
    return True


def write_triton_layout(repo: Path, options: TritonOptions | None = None) -> list[str]:
    """Write config.pbtxt, configs/cpu_local.pbtxt and <version>/model.py for every model in `repo`.

    Returns the model names written. Raises ModelSpecError for an invalid repository.
    """
    options = options or TritonOptions()
    repo = Path(repo)
    by_name: dict[str, list[ModelVersion]] = {}
    registry = ModelRegistry(scan_repository(repo))
    for mv in registry.all():
        by_name.setdefault(mv.name, []).append(mv)
    for name, versions in by_name.items():
        versions.sort(key=lambda mv: int(mv.version))
        if any(mv.is_ensemble for mv in versions):
            _write_ensemble(repo, registry, versions, options)
            continue
        model_dir = repo / name
        (model_dir / "config.pbtxt").write_text(render_config(name, versions, options, local=False))
        (model_dir / "configs").mkdir(exist_ok=True)
        (model_dir / "configs" / f"{CPU_LOCAL}.pbtxt").write_text(render_config(name, versions, options, local=True))
        for mv in versions:
            shutil.copyfile(PYTHON_MODEL, mv.path / "model.py")
    log.info("wrote Triton configs for %s in %s", ", ".join(by_name) or "no models", repo)
    return list(by_name)


def triton_layout_present(repo: Path) -> bool:
    """Whether every model in `repo` has both configs and every version its model.py."""
    repo = Path(repo)
    for mv in scan_repository(repo):
        model_dir = repo / mv.name
        if not (
            (model_dir / "config.pbtxt").is_file()
            and (model_dir / "configs" / f"{CPU_LOCAL}.pbtxt").is_file()
            and (mv.is_ensemble or (mv.path / "model.py").is_file())
        ):
            return False
    return True


def read_model_config(repo: Path, name: str, config_name: str = "") -> dict[str, object]:
    """The Triton model config of `name` as protobuf JSON (dict): `<name>/config.pbtxt`, or
    `<name>/configs/<config_name>.pbtxt` when set (what tritonserver --model-config-name reads).
    Blocking file I/O. A bounded model pool sends it back with a `version_policy` override."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    model_dir = repo / name
    path = model_dir / "configs" / f"{config_name}.pbtxt" if config_name else model_dir / "config.pbtxt"
    config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    return json_format.MessageToDict(config, preserving_proto_field_name=True)
