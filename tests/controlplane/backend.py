"""A tiny PredictionService replica for proxy tests: it answers with its own name.

It stands in for the gateway behind Envoy: `model_version` in every response is the
replica's name, so a test can see which replica served a call. Runs in-process on a
grpc.aio server (with gRPC health, which Envoy's health checks use).
"""

from __future__ import annotations

import uuid
from typing import Any

import grpc

from predmesh.common.grpcserver import GrpcServer
from predmesh.common.settings import ServerSettings
from predmesh.common.tls import TlsFiles
from predmesh.v1 import jobs_pb2, prediction_pb2, prediction_pb2_grpc
from services.controlplane.core.config import Endpoint

SERVICE = "predmesh.v1.PredictionService"


class _Servicer(prediction_pb2_grpc.PredictionServiceServicer):
    def __init__(self, replica: Backend) -> None:
        self._replica = replica

    async def Predict(self, request: Any, context: Any) -> Any:
        self._replica.calls += 1
        return prediction_pb2.PredictResponse(
            request_id=request.request_id or uuid.uuid4().hex,
            model=request.model,
            model_version=self._replica.name,
            entity_id=request.entity_id,
            arm="stable",
        )

    async def PredictBatch(self, request: Any, context: Any) -> Any:
        self._replica.calls += 1
        return prediction_pb2.PredictBatchResponse(
            request_id=request.request_id,
            results=[
                prediction_pb2.PredictResponse(
                    model=request.model, model_version=self._replica.name, entity_id=i.entity_id
                )
                for i in request.items
            ],
        )

    async def GetPrediction(self, request: Any, context: Any) -> Any:
        self._replica.calls += 1
        if request.request_id == "missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no async prediction with this request id")
        return prediction_pb2.GetPredictionResponse(
            request_id=request.request_id,
            state=jobs_pb2.PREDICTION_STATE_DONE,
            response=prediction_pb2.PredictResponse(request_id=request.request_id, model_version=self._replica.name),
        )


class Backend:
    """One replica; `start()` binds a free loopback port, `stop()` closes it at once."""

    def __init__(self, name: str, tls: TlsFiles | None = None) -> None:
        """`tls`: serve mutual TLS with these files (any client certificate of their CA)."""
        self.name = name
        self.calls = 0
        settings = ServerSettings(host="127.0.0.1", port=0, grace_s=0.0)
        if tls is not None:
            settings = settings.model_copy(
                update={"tls_cert_path": tls.cert, "tls_key_path": tls.key, "tls_ca_path": tls.ca}
            )
        self._server = GrpcServer(settings)
        self._server.add_servicer(prediction_pb2_grpc.add_PredictionServiceServicer_to_server, _Servicer(self), SERVICE)

    async def start(self) -> Backend:
        await self._server.start()
        return self

    async def stop(self) -> None:
        await self._server.stop(0)

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(host="127.0.0.1", port=self._server.port)
