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
        width = self.session.get_inputs()[0].shape[-1]
        self.width = width if isinstance(width, int) else None  # None: the model takes any width

    def _shape_error(self, array: Any) -> Any:
        """Checked per request before the batch is run: one client's malformed request fails alone
        with INVALID_ARGUMENT (ONNX Runtime would refuse the whole concatenated batch, failing every
        request in it). None when the shape is right. (Error codes: python backend 23.04+.)"""
        if array.ndim != 2 or (self.width is not None and array.shape[1] != self.width):
            message = f"input must be [rows, {self.width or 'features'}], got {list(array.shape)}"
            return pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
        return None

    def execute(self, requests: list[Any]) -> list[Any]:
        arrays = [pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy() for request in requests]
        errors = [self._shape_error(a) for a in arrays]
        good = [a for a, e in zip(arrays, errors, strict=True) if e is None]  # a bad request fails alone
        parts: list[Any] = []
        if good:
            try:
                batch = (good[0] if len(good) == 1 else np.concatenate(good, axis=0)).astype(np.float32, copy=False)
                output = self.session.run([self.output_name], {self.input_name: batch})[0]
            except Exception as err:  # report to every request of the batch
                failed = pb_utils.TritonError(f"onnxruntime failed: {err}", pb_utils.TritonError.INTERNAL)
                errors = [failed if e is None else e for e in errors]
            else:
                start = 0
                for array in good:
                    parts.append(np.ascontiguousarray(output[start : start + len(array)]))
                    start += len(array)
        responses = []
        results = iter(parts)
        for error in errors:
            if error is not None:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
            else:
                tensor = pb_utils.Tensor(self.output_name, next(results))
                responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
        return responses

    def finalize(self) -> None:
        self.session = None
