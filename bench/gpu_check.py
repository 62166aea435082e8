"""GPU check: the demo models through tritonserver with a KIND_GPU instance group.

Usage (on a machine with CUDA PyTorch; see /work/shared/DESIGN.md "GPU"):

    python -m bench.gpu_check [--repo models] [--seconds 5] [--concurrency 64]

What it does: trains/reuses the demo models, builds a temporary Triton repository where
each model whose ONNX graph uses only dense ops (MatMul/Gemm/Add/Sub/Relu/Sigmoid/
Softmax/Concat/Cast, LinearClassifier) runs as a python-backend model executing the
graph with PyTorch on CUDA (`instance_group KIND_GPU`, 1 ms dynamic batching), tensors
in and out through DLPack (with numpy 2 in the stub's environment, numpy-built outputs
come back empty). Tree models (fraud:1/2, XGBoost) are skipped here: in production they
run on the onnxruntime backend with the CUDA/TensorRT provider (config.pbtxt); the
lent GPU image's onnxruntime has no CUDA provider. It checks outputs against ONNX
Runtime on CPU, then prints requests/s, rows/s and p50/p99 latency at the given
concurrency. Without CUDA it prints why and exits with status 2: nothing is faked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

log = logging.getLogger(__name__)

DENSE_OPS = {"Cast", "MatMul", "Gemm", "Add", "Sub", "Relu", "Sigmoid", "Softmax", "Concat", "LinearClassifier"}

TORCH_MODEL = r'''
"""Python-backend model: a dense ONNX graph evaluated with PyTorch on CUDA (DLPack I/O)."""
import json
from pathlib import Path

import onnx
import torch
from onnx import numpy_helper
from torch.utils.dlpack import from_dlpack, to_dlpack
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        self.device = torch.device("cuda", int(args.get("model_instance_device_id", 0)))
        graph = onnx.load(str(Path(args["model_repository"]) / args["model_version"] / "model.onnx")).graph
        self.consts = {t.name: torch.tensor(numpy_helper.to_array(t).copy()).to(self.device) for t in graph.initializer}
        self.nodes = list(graph.node)

    def run(self, x):
        env = dict(self.consts)
        env[self.input_name] = x
        for node in self.nodes:
            ins = [env[name] for name in node.input if name in env]
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            op = node.op_type
            if op == "Cast":
                if not ins[0].is_floating_point() and attrs.get("to") != 1:
                    continue
                out = [ins[0].float()]
            elif op == "MatMul":
                out = [ins[0] @ ins[1].float()]
            elif op == "Gemm":
                a = ins[0].T if attrs.get("transA") else ins[0]
                b = ins[1].T if attrs.get("transB") else ins[1]
                y = attrs.get("alpha", 1.0) * (a @ b)
                out = [y + attrs.get("beta", 1.0) * ins[2] if len(ins) > 2 else y]
            elif op == "Add":
                out = [ins[0] + ins[1]]
            elif op == "Sub":
                out = [ins[0] - ins[1]]
            elif op == "Relu":
                out = [torch.relu(ins[0])]
            elif op == "Sigmoid":
                out = [torch.sigmoid(ins[0])]
            elif op == "Softmax":
                out = [torch.softmax(ins[0], dim=attrs.get("axis", -1))]
            elif op == "Concat":
                out = [torch.cat(ins, dim=attrs["axis"])]
            elif op == "LinearClassifier":
                coef = torch.tensor(attrs["coefficients"], device=self.device).reshape(len(attrs["intercepts"]), -1)
                z = ins[0] @ coef.T + torch.tensor(attrs["intercepts"], device=self.device)
                p = torch.sigmoid(z) if attrs.get("post_transform", b"NONE") == b"LOGISTIC" else z
                if p.shape[1] == 1:
                    p = torch.cat([1 - p, p], dim=1)
                out = [None, p]
            else:
                continue  # label-only branches (ArgMax, ...): not on the path to the output
            for name, value in zip(node.output, out):
                if value is not None:
                    env[name] = value
            if self.output_name in env:
                return env[self.output_name]
        return env[self.output_name]

    def execute(self, requests):
        xs = [from_dlpack(pb_utils.get_input_tensor_by_name(r, self.input_name).to_dlpack()).to(self.device)
              for r in requests]
        sizes = [len(x) for x in xs]
        with torch.inference_mode():
            y = self.run(torch.cat(xs).float()).contiguous()
        responses, start = [], 0
        for n in sizes:
            part = y[start:start + n].contiguous()
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor.from_dlpack(self.output_name, to_dlpack(part))]))
            start += n
        return responses
'''


def dense_only(path: Path) -> bool:
    graph = onnx.load(str(path)).graph
    needed = {n.op_type for n in graph.node if "label" not in n.output and "argmax_output" not in n.output}
    needed -= {"ArrayFeatureExtractor", "Reshape", "ArgMax"}
    return needed <= DENSE_OPS


def build_gpu_repo(repo: Path, target: Path, max_batch: int = 1024) -> list[tuple[str, str]]:
    from predmesh.models.registry import scan_repository

    served = []
    for mv in scan_repository(repo):
        if mv.is_ensemble:
            print(f"skip {mv}: ensemble (its members are checked)")
            continue
        if not dense_only(mv.onnx_path):
            print(f"skip {mv}: tree ensemble (production: onnxruntime backend with CUDA/TensorRT)")
            continue
        spec = mv.spec
        model_dir = target / f"{spec.name}_{spec.version}"
        (model_dir / "1").mkdir(parents=True)
        (model_dir / "1" / "model.onnx").write_bytes(mv.onnx_path.read_bytes())
        (model_dir / "1" / "model.py").write_text(TORCH_MODEL)
        width = len(spec.class_labels) or 1
        (model_dir / "config.pbtxt").write_text(
            f'name: "{model_dir.name}"\nbackend: "python"\nmax_batch_size: {max_batch}\n'
            f'input [ {{ name: "{spec.onnx.input}" data_type: TYPE_FP32 dims: [{spec.input_width}] }} ]\n'
            f'output [ {{ name: "{spec.onnx.output}" data_type: TYPE_FP32 dims: [{width}] }} ]\n'
            "dynamic_batching { max_queue_delay_microseconds: 1000 }\n"
            "instance_group [ { kind: KIND_GPU count: 1 gpus: [0] } ]\n"
        )
        served.append((str(mv), model_dir.name))
    return served


async def measure(address: str, model: str, spec_width: int, rows: int, seconds: float, concurrency: int) -> dict:
    from tritonclient.grpc import InferInput
    from tritonclient.grpc.aio import InferenceServerClient

    client = InferenceServerClient(address)
    x = np.random.default_rng(0).random((rows, spec_width), dtype=np.float32)
    latencies: list[float] = []
    stop_at = time.monotonic() + seconds

    async def loop() -> None:
        while time.monotonic() < stop_at:
            tensor = InferInput("input", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            started = time.perf_counter()
            await client.infer(model, [tensor], client_timeout=10)
            latencies.append(time.perf_counter() - started)

    started = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    await client.close()
    lat = np.array(latencies) * 1000
    return {
        "model": model,
        "rows_per_request": rows,
        "concurrency": concurrency,
        "req_per_s": round(len(lat) / elapsed),
        "rows_per_s": round(len(lat) * rows / elapsed),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repo", type=Path, default=Path("models"), help="model repository (demo models trained if missing)"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="measurement time per case (s)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import torch
    except ImportError:
        print("gpu_check: PyTorch is not installed; this check needs CUDA PyTorch. Nothing was run.")
        return 2
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible (torch.cuda.is_available() is False). Nothing was run;")
        print("CPU serving is covered by tests/inference/triton (python backend, cpu_local config).")
        return 2
    from predmesh.demo.train import ensure_demo_models
    from predmesh.local.triton import TritonServer

    ensure_demo_models(args.repo)
    import onnxruntime as ort

    from predmesh.models.registry import ModelRegistry

    registry = ModelRegistry.from_directory(args.repo)
    with tempfile.TemporaryDirectory(prefix="predmesh-gpu-") as tmp:
        served = build_gpu_repo(args.repo, Path(tmp) / "models")
        server = TritonServer(Path(tmp) / "models", model_config_name=None, workdir=Path(tmp) / "run")
        server.start()
        try:
            results = []
            for key, triton_name in served:
                mv = registry.get(*key.split(":"))
                x = np.random.default_rng(1).random((64, mv.spec.input_width), dtype=np.float32)
                ref = ort.InferenceSession(str(mv.onnx_path), providers=["CPUExecutionProvider"]).run(
                    [mv.spec.onnx.output], {mv.spec.onnx.input: x}
                )[0]
                import tritonclient.grpc as grpcclient

                client = grpcclient.InferenceServerClient(server.grpc_address)
                tensor = grpcclient.InferInput(mv.spec.onnx.input, list(x.shape), "FP32")
                tensor.set_data_from_numpy(x)
                got = client.infer(triton_name, [tensor]).as_numpy(mv.spec.onnx.output)
                err = float(np.max(np.abs(got - ref)))
                print(f"{key}: max |GPU - ORT CPU| = {err:.2e}")
                for rows in (1, 64):
                    results.append(
                        asyncio.run(
                            measure(
                                server.grpc_address,
                                triton_name,
                                mv.spec.input_width,
                                rows,
                                args.seconds,
                                args.concurrency,
                            )
                        )
                    )
            print(json.dumps({"device": torch.cuda.get_device_name(0), "results": results}, indent=2))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
