"""A minimal MLServer runtime that serves one ONNX model with onnxruntime (benchmark peer).

MLServer 1.7 ships no ONNX runtime, so this is the smallest fair one: decode the V2
input tensor with MLServer's NumpyCodec, one `InferenceSession.run`, encode the output.
Runs inside the MLServer venv (`.predmesh/bench/venvs/mlserver`), never predmesh's.

model-settings.json parameters: `uri` (path to model.onnx) and `extra`:
`{"input": "input", "output": "probabilities", "intra_op_threads": 1}`.
"""

from __future__ import annotations

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxModel(MLModel):
    async def load(self) -> bool:
        params = self.settings.parameters
        extra = (params.extra if params else None) or {}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(extra.get("intra_op_threads", 1))
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(params.uri if params else "model.onnx"),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )
        self._input = str(extra.get("input", "input"))
        self._output = str(extra.get("output", "probabilities"))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        matrix = NumpyCodec.decode_input(payload.inputs[0])
        probs = self._session.run([self._output], {self._input: matrix})[0]
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[NumpyCodec.encode_output(self._output, probs)],
        )
