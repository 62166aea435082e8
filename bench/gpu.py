"""GPU scenario for the device tool: Triton direct vs through the mesh, on a GPU model.

    python -m bench.gpu [--duration 10] [--batch-sizes 1,64] [--concurrency 64] [--out DIR]

Refuses (exit code 3, one line on stderr) unless PyTorch sees a CUDA device: there is no
CPU fallback here on purpose, since the point is GPU numbers. On the lent GPU machine
the wheel's tritonserver serves a python-backend model that runs a seeded torch MLP
(17 -> 512 -> 512 -> 2, softmax) on CUDA with 1 ms dynamic batching; tensors go in and
out through DLPack (numpy-built outputs come back empty with numpy 2 in the stub's
environment). Measured, closed loop then open loop at half the closed-loop maximum:

- Triton direct: V2 ModelInfer on a ready FP32 tensor, for each batch size;
- through the mesh: orchestrator Infer -> Triton, and gateway Predict -> features +
  orchestrator -> Triton (`PREDMESH_INFERENCE_TRITON_TARGET`, `CPU_BACKEND=triton`), on
  `fraud_gpu`: the demo `fraud` v1 spec (same 17 preprocessed columns) served by the torch
  MLP. Needs the core mesh to start on the device machine (redis-server, predmesh's
  dependencies); when it cannot, the reason is reported and only Triton direct runs.

Writes `<out>/gpu-<time>.json` and prints a markdown table. Needs on the device machine:
python3 with CUDA PyTorch, plus (installed --no-deps into a target dir on PYTHONPATH)
nvidia-pytriton, tritonclient[grpc] and python-rapidjson; numpy and grpcio from the image.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

GPU_MODEL_PY = """\
import torch
import triton_python_backend_utils as pb_utils
from torch.utils.dlpack import from_dlpack, to_dlpack


class TritonPythonModel:
    def initialize(self, args):
        torch.manual_seed(0)
        self.device = torch.device("cuda")
        self.net = torch.nn.Sequential(
            torch.nn.Linear(WIDTH, 512), torch.nn.ReLU(),
            torch.nn.Linear(512, 512), torch.nn.ReLU(),
            torch.nn.Linear(512, 2), torch.nn.Softmax(dim=-1),
        ).to(self.device).eval()

    def execute(self, requests):
        xs = [from_dlpack(pb_utils.get_input_tensor_by_name(r, "input").to_dlpack()) for r in requests]
        sizes = [x.shape[0] for x in xs]
        with torch.inference_mode():
            probs = self.net(torch.cat(xs).to(self.device, non_blocking=True)).float().cpu()
        responses, offset = [], 0
        for n in sizes:
            chunk = probs[offset : offset + n].contiguous()
            offset += n
            tensor = pb_utils.Tensor.from_dlpack("probabilities", to_dlpack(chunk))
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
        return responses
"""


def cuda_device() -> str | None:
    """Name of the first CUDA device, or None (no torch, or no device)."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return str(torch.cuda.get_device_name(0))


GPU_MODEL = "fraud_gpu"
GPU_CONFIG = """\
name: "fraud_gpu"
backend: "python"
max_batch_size: 1024
input [ { name: "input" data_type: TYPE_FP32 dims: [ WIDTH ] } ]
output [ { name: "probabilities" data_type: TYPE_FP32 dims: [ 2 ] } ]
dynamic_batching { max_queue_delay_microseconds: 1000 }
instance_group [ { count: 1 kind: KIND_GPU } ]
"""


def _try_mesh(state_dir: Path) -> tuple[Any, str]:
    """The core mesh (Redis, features, inference, gateway) for the mesh path, or (None, why not)."""
    try:
        from bench.mesh import BenchMesh

        return BenchMesh(state_dir, want_logging=False, want_edge=False).start(), ""
    except Exception as err:
        return None, f"mesh could not start here: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


def _gpu_repo(repo: Path, width: int, mesh: Any) -> Path:
    """Triton + predmesh repository holding `fraud_gpu` v1: a torch MLP on CUDA for Triton, and
    (when the mesh runs) the demo `fraud` v1 spec renamed, so the orchestrator preprocesses the
    same 17 columns before sending them to Triton."""
    import shutil

    model = repo / GPU_MODEL
    version = model / "1"
    version.mkdir(parents=True, exist_ok=True)
    (model / "config.pbtxt").write_text(GPU_CONFIG.replace("WIDTH", str(width)))
    (version / "model.py").write_text(GPU_MODEL_PY.replace("WIDTH", str(width)))
    if mesh is not None:
        source = mesh.model_repository / "fraud" / "1"
        shutil.copyfile(source / "model.onnx", version / "model.onnx")
        spec = (source / "model.yaml").read_text()
        (version / "model.yaml").write_text(spec.replace("name: fraud\n", f"name: {GPU_MODEL}\n", 1))
    return repo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--batch-sizes", default="1,64")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(".predmesh/bench/results"))
    args = parser.parse_args(argv)

    device = cuda_device()
    if device is None:
        print("bench.gpu: no CUDA device visible to PyTorch; this scenario only runs on a GPU machine", file=sys.stderr)
        return 3

    from bench import loadgen
    from bench.loadgen import LoadSpec, TargetSpec
    from predmesh.local.triton import TritonServer

    width = 17  # the demo fraud models' input width, so the mesh path can use the same tensor
    out = args.out.resolve()
    mesh, mesh_reason = _try_mesh(out / "gpu-mesh")
    repo = _gpu_repo(out / "gpu-models", width, mesh)
    triton = TritonServer(
        repo,
        model_config_name=None,
        workdir=out / "gpu-logs" / "triton",
        extra_args=["--model-control-mode=explicit", f"--load-model={GPU_MODEL}"],
    )
    rows: list[dict[str, Any]] = []

    def both(path: str, target: TargetSpec, size: int) -> None:
        closed = loadgen.run(
            target,
            LoadSpec(
                mode="closed",
                concurrency=args.concurrency,
                duration_s=args.duration,
                warmup_requests=100,
                processes=args.client_procs,
            ),
        ).to_dict()
        rate = max(10.0, math.floor(closed["throughput"] * 0.5))
        opened = loadgen.run(
            target,
            LoadSpec(
                mode="open",
                rate=rate,
                arrival="poisson",
                duration_s=args.duration,
                warmup_requests=100,
                processes=args.client_procs,
            ),
        ).to_dict()
        rows.append({"path": path, "batch_size": size, "closed": closed, "open": opened})

    try:
        triton.start()
        for size in [int(s) for s in args.batch_sizes.split(",")]:
            both(
                "triton-direct",
                TargetSpec(
                    "bench.gpu:make_random_v2",
                    {"address": triton.grpc_address, "width": width, "batch_size": size},
                    items_per_call=size,
                ),
                size,
            )
        if mesh is not None:
            try:
                inference = mesh.add_inference(
                    "inference-gpu",
                    repo,
                    PREDMESH_INFERENCE_TRITON_TARGET=triton.grpc_address,
                    PREDMESH_INFERENCE_CPU_BACKEND="triton",
                )
                gateway = mesh.gateway_for("gateway-gpu", inference.address)
                spec = {"model": GPU_MODEL, "version": "1"}
                both(
                    "mesh: orchestrator Infer -> Triton",
                    TargetSpec("bench.targets:make_infer", {"address": inference.address, **spec}),
                    1,
                )
                both(
                    "mesh: gateway Predict -> orchestrator -> Triton",
                    TargetSpec("bench.targets:make_predict", {"address": gateway, **spec}),
                    1,
                )
            except Exception as err:
                mesh_reason = f"{type(err).__name__}: {err}"
    finally:
        triton.stop()
        if mesh is not None:
            mesh.stop()
    result = {"device": device, "rows": rows, "mesh_path": mesh_reason or "measured"}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gpu-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    print(f"## GPU: {device}\n")
    print("| path | batch | max req/s | rows/s | open rate | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        c, o = row["closed"], row["open"]
        print(
            f"| {row['path']} | {row['batch_size']} | {c['throughput']:.0f} | {c['items_per_s']:.0f} | "
            f"{o['offered_rate']:.0f} | {o['latency_ms']['p50']:.2f} | {o['latency_ms']['p99']:.2f} |"
        )
    print(f"\nmesh path: {result['mesh_path']}\nresults: {path}")
    return 0


class _RandomV2:
    """V2 ModelInfer of random FP32 rows (kept free of bench.targets' pandas/predmesh imports)."""

    def __init__(self, address: str, width: int, batch_size: int, timeout_s: float) -> None:
        import grpc
        import numpy as np
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        self.grpc = grpc
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)
        self.timeout_s = timeout_s
        rng = np.random.default_rng(0)
        self.requests = []
        for _ in range(16):
            request = service_pb2.ModelInferRequest(model_name=GPU_MODEL, model_version="1")
            tensor = request.inputs.add()
            tensor.name, tensor.datatype = "input", "FP32"
            tensor.shape.extend([batch_size, width])
            request.outputs.add().name = "probabilities"
            request.raw_input_contents.append(rng.random((batch_size, width), dtype=np.float32).tobytes())
            self.requests.append(request)
        self.i = 0

    async def call(self) -> str:
        self.i += 1
        try:
            await self.stub.ModelInfer(self.requests[self.i % len(self.requests)], timeout=self.timeout_s)
        except self.grpc.aio.AioRpcError as err:
            return str(err.code().name)
        return "OK"

    async def close(self) -> None:
        await self.channel.close()


async def make_random_v2(address: str, width: int, batch_size: int, timeout_s: float = 5.0) -> _RandomV2:
    return _RandomV2(address, width, batch_size, timeout_s)


if __name__ == "__main__":
    raise SystemExit(main())
