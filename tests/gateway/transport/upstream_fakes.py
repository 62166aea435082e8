"""In-process fakes of the gateway's upstreams, served by a real grpc.aio server on a free port.

One server hosts FeatureService, InferenceService, LoggerService and PredictionCallback, so the
gateway's real clients (FeaturesClient, InferenceClient, LoggerClient, CallbackClient) talk real
gRPC to them. Model `fraud` (versions 1 and 2, feature `amount`) scores a row amount / 1000;
anything else is NOT_FOUND. Set `features_error` to make GetFeatures fail with that status.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from predmesh.v1 import (
    common_pb2,
    events_pb2,
    events_pb2_grpc,
    features_pb2,
    features_pb2_grpc,
    inference_pb2,
    inference_pb2_grpc,
    prediction_pb2,
    prediction_pb2_grpc,
)


class Upstreams(
    features_pb2_grpc.FeatureServiceServicer,
    inference_pb2_grpc.InferenceServiceServicer,
    events_pb2_grpc.LoggerServiceServicer,
    prediction_pb2_grpc.PredictionCallbackServicer,
):
    def __init__(self) -> None:
        self.features_error: grpc.StatusCode | None = None
        self.feature_requests: list[features_pb2.GetFeaturesRequest] = []
        self.infer_requests: list[inference_pb2.InferRequest] = []
        self.events: list[events_pb2.PredictionEvent] = []
        self.event_arrived = asyncio.Event()
        self.deliveries: list[prediction_pb2.CallbackDelivery] = []
        self.delivered = asyncio.Event()
        self._server: grpc.aio.Server | None = None
        self.address = ""

    async def start(self) -> str:
        server = grpc.aio.server()
        features_pb2_grpc.add_FeatureServiceServicer_to_server(self, server)
        inference_pb2_grpc.add_InferenceServiceServicer_to_server(self, server)
        events_pb2_grpc.add_LoggerServiceServicer_to_server(self, server)
        prediction_pb2_grpc.add_PredictionCallbackServicer_to_server(self, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._server = server
        self.address = f"127.0.0.1:{port}"
        return self.address

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)

    # -- FeatureService --------------------------------------------------------------
    async def GetFeatures(
        self, request: features_pb2.GetFeaturesRequest, context: grpc.aio.ServicerContext
    ) -> features_pb2.GetFeaturesResponse:
        self.feature_requests.append(request)
        if self.features_error is not None:
            await context.abort(self.features_error, "features store down (fake)")
        vectors = []
        for entity in request.entities:
            values = []
            for name in request.features:
                given = entity.context.get(name)
                values.append(given if given is not None else common_pb2.Value(number_value=100.0))
            vectors.append(features_pb2.FeatureVector(entity_id=entity.entity_id, values=values))
        return features_pb2.GetFeaturesResponse(vectors=vectors)

    # -- InferenceService ----------------------------------------------------------------
    async def GetModel(
        self, request: inference_pb2.GetModelRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.ModelInfo:
        if request.model != "fraud":
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {request.model!r}")
        return inference_pb2.ModelInfo(
            name="fraud",
            versions=["1", "2"],
            version=request.version or "2",
            task="classification",
            entity_type="user",
            features=["amount"],
        )

    async def Infer(
        self, request: inference_pb2.InferRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.InferResponse:
        self.infer_requests.append(request)
        predictions = [common_pb2.Prediction(score=row.values[0].number_value / 1000.0) for row in request.rows]
        return inference_pb2.InferResponse(
            model=request.model, model_version=request.version or "2", predictions=predictions
        )

    # -- LoggerService ---------------------------------------------------------------------
    async def Publish(
        self, request_iterator: AsyncIterator[events_pb2.EventBatch], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[events_pb2.PublishAck]:
        async for batch in request_iterator:
            self.events.extend(batch.events)
            self.event_arrived.set()
            yield events_pb2.PublishAck(sequence=batch.sequence, accepted=len(batch.events))

    # -- PredictionCallback ----------------------------------------------------------------
    async def OnPrediction(
        self, request: prediction_pb2.CallbackDelivery, context: grpc.aio.ServicerContext
    ) -> prediction_pb2.CallbackAck:
        self.deliveries.append(request)
        self.delivered.set()
        return prediction_pb2.CallbackAck()
