"""Before measuring: check that every system scores the same transaction the same way.

Same model and same data are what make the comparison fair, so the driver asks each
system for P(fraud) of a few transactions and records the largest disagreement with
predmesh's gateway. Blocking calls with short deadlines; used once per run.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from bench import workload
from bench.targets import _value

_SAMPLES = 5


def _gateway(address: str, model: str, version: str, row: dict[str, Any]) -> float:
    from predmesh.v1 import prediction_pb2, prediction_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        resp = prediction_pb2_grpc.PredictionServiceStub(channel).Predict(
            prediction_pb2.PredictRequest(
                model=model,
                version=version,
                entity_id=row["entity_id"],
                context={k: _value(row[k]) for k in workload.REQUEST_FEATURES},
            ),
            timeout=5,
        )
    return float(resp.prediction.score)


def _infer(address: str, model: str, version: str, row: dict[str, Any]) -> float:
    from predmesh.v1 import inference_pb2, inference_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        resp = inference_pb2_grpc.InferenceServiceStub(channel).Infer(
            inference_pb2.InferRequest(
                model=model,
                version=version,
                feature_names=workload.ALL_FEATURES,
                rows=[inference_pb2.Row(values=[_value(row[k]) for k in workload.ALL_FEATURES])],
            ),
            timeout=5,
        )
    return float(resp.predictions[0].score)


def _v2(address: str, name: str, version: str, vector: np.ndarray) -> float:
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    request = service_pb2.ModelInferRequest(model_name=name, model_version=version)
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = "input", "FP32"
    tensor.shape.extend([1, int(vector.shape[0])])
    request.outputs.add().name = "probabilities"
    request.raw_input_contents.append(np.ascontiguousarray(vector[None, :], dtype=np.float32).tobytes())
    with grpc.insecure_channel(address) as channel:
        resp = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=5)
    if resp.raw_output_contents:
        probs = np.frombuffer(resp.raw_output_contents[0], dtype=np.float32)
    else:
        probs = np.asarray(resp.outputs[0].contents.fp32_contents, dtype=np.float32)
    return float(probs.reshape(-1, 2)[0, 1])


def _http_predict(url: str, row: dict[str, Any]) -> float:
    body = json.dumps({"entity_id": row["entity_id"], **{k: row[k] for k in workload.REQUEST_FEATURES}})
    request = urllib.request.Request(url, body.encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        return float(json.load(resp)["score"])


def check_scores(
    model: str,
    version: str,
    repo: Path,
    gateway: str,
    predict: dict[str, str],
    infer: dict[str, str],
    v2: dict[str, str],
    http_predict: dict[str, str],
) -> dict[str, Any]:
    """Largest |score - gateway score| per system over a few transactions (and any error).

    `gateway` is the reference; `predict` other PredictionService addresses (Envoy, ...),
    `infer` InferenceService addresses, `v2` KServe V2 servers, `http_predict` the URLs of
    peers with the FastAPI baseline's JSON API (FastAPI, Ray Serve).
    """
    rows = workload.transactions()[:_SAMPLES]
    matrix = workload.model_matrix(repo, model, version)[:_SAMPLES]
    reference = [_gateway(gateway, model, version, row) for row in rows]
    scorers: dict[str, Any] = {
        **{name: (lambda i, a=addr: _gateway(a, model, version, rows[i])) for name, addr in predict.items()},
        **{name: (lambda i, a=addr: _infer(a, model, version, rows[i])) for name, addr in infer.items()},
        **{name: (lambda i, a=addr: _v2(a, model, version, matrix[i])) for name, addr in v2.items()},
    }
    scorers.update({name: (lambda i, u=url: _http_predict(u, rows[i])) for name, url in http_predict.items()})
    out: dict[str, Any] = {"reference": "gateway", "samples": _SAMPLES, "max_abs_diff": {}}
    for name, score in scorers.items():
        try:
            out["max_abs_diff"][name] = max(abs(score(i) - reference[i]) for i in range(_SAMPLES))
        except Exception as err:
            out["max_abs_diff"][name] = f"error: {type(err).__name__}: {err}"
    return out
