"""Triton python-backend model that runs one ONNX model version with ONNX Runtime (CPU).

`services.inference.triton.layout` copies this file to `<repo>/<name>/<version>/model.py`
for the local `configs/cpu_local.pbtxt` config (tritonserver from nvidia-pytriton has
the python backend only). Production uses `config.pbtxt` (backend onnxruntime) instead.

Triton's dynamic batcher hands `execute` several requests at once: their inputs are
concatenated, run in ONE session run and split back, so each response carries exactly
its request's rows. Runs inside triton_python_backend_stub, which imports numpy and
onnxruntime from the first python3 on PATH (our venv).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        params = config.get("parameters", {})
        threads = int(params.get("intra_op_threads", {}).get("string_value", "1"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])

    def execute(self, requests: list[Any]) -> list[Any]:
        arrays = [pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy() for request in requests]
        sizes = [len(a) for a in arrays]
        try:
            batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
            output = self.session.run([self.output_name], {self.input_name: batch.astype(np.float32, copy=False)})[0]
        except Exception as err:  # report to every request of the batch
            error = pb_utils.TritonError(f"onnxruntime failed: {err}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses = []
        start = 0
        for size in sizes:
            part = np.ascontiguousarray(output[start : start + size])
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output_name, part)]))
            start += size
        return responses

    def finalize(self) -> None:
        self.session = None
