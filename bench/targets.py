"""What one benchmark request is, for each system under test (load generator targets).

Each ``async def make_*(**kwargs)`` builds a target in the calling process: one
long-lived channel or HTTP session, reused by every call and closed by ``close()``.
``call()`` cycles through ``workload.transactions()`` and returns ``"OK"`` or the
failure's status name (gRPC code name, ``HTTP_<status>``), so the load generator can
count errors by status; a predmesh Predict/PredictBatch answered from the fallback
chain is ``"DEGRADED"`` (not counted as throughput). Every call carries a deadline
(``timeout_s``).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from bench import workload
from bench.loadgen import OK

DEGRADED = "DEGRADED"
_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]


def _value(v: Any) -> Any:
    from predmesh.v1 import common_pb2

    if isinstance(v, bool):
        return common_pb2.Value(bool_value=v)
    if isinstance(v, int | float):
        return common_pb2.Value(number_value=float(v))
    return common_pb2.Value(string_value=str(v))


class _Grpc:
    def __init__(self, address: str, timeout_s: float) -> None:
        options: list[tuple[str, int | str]] = list(_CHANNEL_OPTIONS)
        if "," in address:  # several replicas: spread calls over all of them
            address = "ipv4:" + address
            options.append(("grpc.lb_policy_name", "round_robin"))
        self.channel = grpc.aio.insecure_channel(address, options=options)
        self.timeout_s = timeout_s

    async def _call(self, method: Any, request: Any) -> tuple[str, Any]:
        """(OK, reply) or (the gRPC status name, None)."""
        try:
            return OK, await method(request, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as err:
            return str(err.code().name), None

    async def _unary(self, method: Any, request: Any) -> str:
        return (await self._call(method, request))[0]

    async def _prediction(self, method: Any, request: Any) -> str:
        """A Predict/PredictBatch call: a degraded answer (fallback chain) counts as DEGRADED, not OK."""
        status, reply = await self._call(method, request)
        if reply is None:
            return status
        results = reply.results if hasattr(reply, "results") else [reply]
        return DEGRADED if any(r.degraded for r in results) else OK

    async def close(self) -> None:
        await self.channel.close()


class PredictTarget(_Grpc):
    """PredictionService.Predict on the gateway (or Envoy in front of it): one entity."""

    def __init__(self, address: str, model: str, version: str, timeout_s: float) -> None:
        from predmesh.v1 import prediction_pb2, prediction_pb2_grpc

        super().__init__(address, timeout_s)
        self.stub = prediction_pb2_grpc.PredictionServiceStub(self.channel)
        self.requests = itertools.cycle(
            [
                prediction_pb2.PredictRequest(
                    model=model,
                    version=version,
                    entity_id=row["entity_id"],
                    context={k: _value(row[k]) for k in workload.REQUEST_FEATURES},
                )
                for row in workload.transactions()
            ]
        )

    async def call(self) -> str:
        return await self._prediction(self.stub.Predict, next(self.requests))


class CacheMixTarget(_Grpc):
    """Predict where `hit_ratio` of the requests repeat one of `hot` fixed requests (entity + context):
    cache hits once warm. The others are new requests (a unique `amount`): misses. The first `hot`
    calls send each hot request once (send them as the warm-up); then the mix, seeded."""

    def __init__(self, address: str, model: str, hit_ratio: float, hot: int, seed: int, timeout_s: float) -> None:
        import random

        from predmesh.v1 import prediction_pb2, prediction_pb2_grpc

        super().__init__(address, timeout_s)
        self.stub = prediction_pb2_grpc.PredictionServiceStub(self.channel)
        rows = workload.transactions()
        self._rng = random.Random(seed)
        self._hit_ratio = hit_ratio
        self._cold = itertools.cycle(rows[hot:])
        self._n = 0

        def request(row: dict[str, Any], amount: float) -> Any:
            context = {k: _value(row[k]) for k in workload.REQUEST_FEATURES} | {"amount": _value(amount)}
            return prediction_pb2.PredictRequest(model=model, entity_id=row["entity_id"], context=context)

        self._request = request
        self._hot = [request(row, row["amount"]) for row in rows[:hot]]

    async def call(self) -> str:
        n, self._n = self._n, self._n + 1
        if n < len(self._hot):
            request = self._hot[n]
        elif self._rng.random() < self._hit_ratio:
            request = self._hot[self._rng.randrange(len(self._hot))]
        else:  # never seen: a unique amount (the cache key hashes the context)
            row = next(self._cold)
            request = self._request(row, round(row["amount"] + n * 1e-4 + self._rng.random() * 1e-5, 6))
        return await self._prediction(self.stub.Predict, request)


class PredictBatchTarget(_Grpc):
    """PredictionService.PredictBatch with ``batch_size`` entities per call."""

    def __init__(self, address: str, model: str, version: str, batch_size: int, timeout_s: float) -> None:
        from predmesh.v1 import prediction_pb2, prediction_pb2_grpc

        super().__init__(address, timeout_s)
        self.stub = prediction_pb2_grpc.PredictionServiceStub(self.channel)
        rows = workload.transactions()
        items = [
            prediction_pb2.BatchItem(
                entity_id=row["entity_id"], context={k: _value(row[k]) for k in workload.REQUEST_FEATURES}
            )
            for row in rows
        ]
        batches = []
        for start in range(0, max(len(items), batch_size * 4), batch_size):
            chunk = [items[(start + i) % len(items)] for i in range(batch_size)]
            batches.append(prediction_pb2.PredictBatchRequest(model=model, version=version, items=chunk))
        self.requests = itertools.cycle(batches)

    async def call(self) -> str:
        return await self._prediction(self.stub.PredictBatch, next(self.requests))


class InferTarget(_Grpc):
    """InferenceService.Infer on the orchestrator: named feature values, no feature fetch."""

    def __init__(self, address: str, model: str, version: str, batch_size: int, timeout_s: float) -> None:
        from predmesh.v1 import inference_pb2, inference_pb2_grpc

        super().__init__(address, timeout_s)
        self.stub = inference_pb2_grpc.InferenceServiceStub(self.channel)
        rows = [
            inference_pb2.Row(values=[_value(row[k]) for k in workload.ALL_FEATURES]) for row in workload.transactions()
        ]
        self.requests = itertools.cycle(
            [
                inference_pb2.InferRequest(
                    model=model,
                    version=version,
                    feature_names=workload.ALL_FEATURES,
                    rows=[rows[(start + i) % len(rows)] for i in range(batch_size)],
                )
                for start in range(0, len(rows), batch_size)
            ]
        )

    async def call(self) -> str:
        return await self._unary(self.stub.Infer, next(self.requests))


class FeaturesTarget(_Grpc):
    """FeatureService.GetFeatures of the stored features of `entities` users per call
    (1 = what Feast is compared with)."""

    def __init__(self, address: str, timeout_s: float, entities: int = 1) -> None:
        from predmesh.v1 import features_pb2, features_pb2_grpc

        super().__init__(address, timeout_s)
        self.stub = features_pb2_grpc.FeatureServiceStub(self.channel)
        # Distinct users per call (a batch never repeats an entity), in transaction order.
        ids = list(dict.fromkeys(row["entity_id"] for row in workload.transactions()))
        self.requests = itertools.cycle(
            [
                features_pb2.GetFeaturesRequest(
                    entity_type="user",
                    entities=[features_pb2.EntityKey(entity_id=ids[(i + k) % len(ids)]) for k in range(entities)],
                    features=workload.STORE_FEATURES,
                )
                for i in range(0, len(ids), entities)
            ]
        )

    async def call(self) -> str:
        return await self._unary(self.stub.GetFeatures, next(self.requests))


class V2InferTarget(_Grpc):
    """KServe V2 / Open Inference Protocol ModelInfer (MLServer, Triton) on a ready FP32 tensor."""

    def __init__(
        self,
        address: str,
        model_name: str,
        model_version: str,
        matrix: np.ndarray,
        input_name: str,
        output_name: str,
        batch_size: int,
        timeout_s: float,
    ) -> None:
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        super().__init__(address, timeout_s)
        self.stub = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)
        width = int(matrix.shape[1])
        requests = []
        for start in range(0, len(matrix), batch_size):
            chunk = np.ascontiguousarray(matrix[start : start + batch_size], dtype=np.float32)
            if len(chunk) < batch_size:
                continue
            request = service_pb2.ModelInferRequest(model_name=model_name, model_version=model_version)
            tensor = request.inputs.add()
            tensor.name = input_name
            tensor.datatype = "FP32"
            tensor.shape.extend([batch_size, width])
            request.outputs.add().name = output_name
            request.raw_input_contents.append(chunk.tobytes())
            requests.append(request)
        self.requests = itertools.cycle(requests)

    async def call(self) -> str:
        return await self._unary(self.stub.ModelInfer, next(self.requests))


class HttpJsonTarget:
    """POST a JSON body per call (FastAPI baseline, Feast feature server); 200 is OK."""

    def __init__(self, url: str, bodies: list[dict[str, Any]], timeout_s: float) -> None:
        import aiohttp

        self.url = url
        self.bodies = itertools.cycle(bodies)
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            connector=aiohttp.TCPConnector(limit=256),
        )

    async def call(self) -> str:
        async with self.session.post(self.url, json=next(self.bodies)) as resp:
            await resp.read()
            return OK if resp.status == 200 else f"HTTP_{resp.status}"

    async def close(self) -> None:
        await self.session.close()


# -- factories named by TargetSpec ---------------------------------------------------------


async def make_predict(address: str, model: str, version: str = "", timeout_s: float = 5.0) -> PredictTarget:
    return PredictTarget(address, model, version, timeout_s)


async def make_predict_cache_mix(
    address: str, model: str, hit_ratio: float, hot: int = 200, seed: int = 1, timeout_s: float = 5.0
) -> CacheMixTarget:
    return CacheMixTarget(address, model, hit_ratio, hot, seed, timeout_s)


async def make_predict_batch(
    address: str, model: str, batch_size: int, version: str = "", timeout_s: float = 10.0
) -> PredictBatchTarget:
    return PredictBatchTarget(address, model, version, batch_size, timeout_s)


async def make_infer(
    address: str, model: str, version: str = "", batch_size: int = 1, timeout_s: float = 5.0
) -> InferTarget:
    return InferTarget(address, model, version, batch_size, timeout_s)


async def make_features(address: str, timeout_s: float = 5.0, entities: int = 1) -> FeaturesTarget:
    return FeaturesTarget(address, timeout_s, entities)


async def make_v2_infer(
    address: str,
    model_repository: str,
    model: str,
    version: str,
    served_name: str = "",
    served_version: str = "",
    batch_size: int = 1,
    timeout_s: float = 5.0,
) -> V2InferTarget:
    matrix = workload.model_matrix(Path(model_repository), model, version)
    return V2InferTarget(
        address,
        served_name or model,
        served_version,
        matrix,
        "input",
        "probabilities",
        batch_size,
        timeout_s,
    )


async def make_fastapi(url: str, timeout_s: float = 5.0) -> HttpJsonTarget:
    bodies = [
        {"entity_id": row["entity_id"], **{k: row[k] for k in workload.REQUEST_FEATURES}}
        for row in workload.transactions()
    ]
    return HttpJsonTarget(url, bodies, timeout_s)


async def make_feast(url: str, feature_view: str = "user_features", timeout_s: float = 5.0) -> HttpJsonTarget:
    features = [f"{feature_view}:{name}" for name in workload.STORE_FEATURES]
    bodies = [{"features": features, "entities": {"entity_id": [row["entity_id"]]}} for row in workload.transactions()]
    return HttpJsonTarget(url, bodies, timeout_s)
