"""Triton direct: the tritonserver binary from the nvidia-pytriton wheel serving one ONNX model.

predmesh's own Triton launcher (`predmesh/local/triton.py`) had not landed when this
was written, so the benchmark carries this minimal one (bench-only, CPU): the wheel's
tritonserver 2.51 ships only the Python backend, so the model is a python-backend
`model.py` that runs onnxruntime over the whole dynamic batch (1 ms queue delay). The
stub picks its site-packages from the first `python3` on PATH, so our venv's bin goes
first (our numpy<2 + onnxruntime), and LD_LIBRARY_PATH holds the interpreter's LIBDIR.

`TritonProcess(model_onnx, name, version, workdir)` lays out a model repository and a
backend directory (symlinks into the wheel) in `workdir`; raises FileNotFoundError when
the wheel is not installed.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from predmesh.local.procs import ManagedProcess, free_port

MODEL_PY = """\
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        arrays = [pb_utils.get_input_tensor_by_name(r, "input").as_numpy() for r in requests]
        probs = self.session.run(["probabilities"], {"input": np.concatenate(arrays)})[0]
        responses, offset = [], 0
        for array in arrays:
            chunk = np.ascontiguousarray(probs[offset : offset + len(array)], dtype=np.float32)
            offset += len(array)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("probabilities", chunk)]))
        return responses
"""

CONFIG = """\
name: "{name}"
backend: "python"
max_batch_size: 1024
input [ {{ name: "input" data_type: TYPE_FP32 dims: [ {width} ] }} ]
output [ {{ name: "probabilities" data_type: TYPE_FP32 dims: [ 2 ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: 1000 }}
instance_group [ {{ count: 1 kind: {kind} }} ]
"""


def pytriton_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("nvidia-pytriton is not installed (pip install 'predmesh[local]')")
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    if not (root / "bin" / "tritonserver").exists():
        raise FileNotFoundError(f"no tritonserver binary under {root}")
    return root


class TritonProcess(ManagedProcess):
    name = "triton"
    ready_timeout_s = 90.0

    def __init__(
        self,
        model_onnx: Path | None,
        model_name: str,
        version: str,
        workdir: Path,
        width: int = 0,
        model_py: str = MODEL_PY,
        kind: str = "KIND_CPU",
    ) -> None:
        wheel = pytriton_dir()
        super().__init__(workdir)
        self.wheel = wheel
        self.model_name = model_name
        self.grpc_port, self.http_port, self.metrics_port = free_port(), free_port(), free_port()
        if not width:
            import onnx

            assert model_onnx is not None, "give width when there is no ONNX model"

            dims = onnx.load(str(model_onnx)).graph.input[0].type.tensor_type.shape.dim
            width = int(dims[1].dim_value)
        repo = workdir / "models"
        version_dir = repo / model_name / version
        version_dir.mkdir(parents=True, exist_ok=True)
        (repo / model_name / "config.pbtxt").write_text(CONFIG.format(name=model_name, width=width, kind=kind))
        (version_dir / "model.py").write_text(model_py)
        onnx_link = version_dir / "model.onnx"
        if model_onnx is not None and not onnx_link.exists():
            onnx_link.symlink_to(model_onnx.resolve())
        backend = workdir / "backends" / "python"
        backend.mkdir(parents=True, exist_ok=True)
        py = f"{sys.version_info.major}.{sys.version_info.minor}"
        for src in (
            wheel / "backends" / "python" / "libtriton_python.so",
            wheel / "backends" / "python" / "triton_python_backend_utils.py",
            wheel / "python_backend_stubs" / py / "triton_python_backend_stub",
        ):
            link = backend / src.name
            if not link.exists():
                link.symlink_to(src)
        self.repo = repo

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def environment(self) -> dict[str, str]:
        env = super().environment()
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [libdir, env.get("LD_LIBRARY_PATH")]))
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env

    def command(self) -> Sequence[str]:
        return [
            str(self.wheel / "bin" / "tritonserver"),
            f"--model-repository={self.repo}",
            f"--backend-directory={self.workdir / 'backends'}",
            f"--grpc-port={self.grpc_port}",
            f"--http-port={self.http_port}",
            f"--metrics-port={self.metrics_port}",
            "--allow-metrics=false",
            "--log-verbose=0",
        ]

    def ready(self) -> bool:
        url = f"http://127.0.0.1:{self.http_port}/v2/models/{self.model_name}/ready"
        with urllib.request.urlopen(url, timeout=0.5) as resp:
            return bool(resp.status == 200)
