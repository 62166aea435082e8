"""Thin gRPC servicer: protobuf -> domain, call `InferenceCore`, domain -> protobuf.

Errors are raised as PredmeshError and mapped to status codes by the shared
`ErrorInterceptor`; nothing here catches them.
"""

from __future__ import annotations

import grpc

from predmesh.common.deadline import Deadline
from predmesh.v1 import inference_pb2, inference_pb2_grpc
from services.inference.core.priority import REQUEST_PRIORITY
from services.inference.core.service import InferenceCore
from services.inference.transport import converters


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    """`predmesh.v1.InferenceService` on top of an `InferenceCore` it borrows."""

    def __init__(self, core: InferenceCore) -> None:
        self._core = core

    async def Infer(
        self, request: inference_pb2.InferRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.InferResponse:
        remaining = context.time_remaining()
        deadline = Deadline.after(remaining) if remaining is not None else None
        REQUEST_PRIORITY.set(request.priority)  # this call's task only (micro-batcher order)
        version, predictions = await self._core.infer(
            request.model,
            request.version,
            list(request.feature_names),
            converters.rows_from_proto(request.rows),
            deadline=deadline,
        )
        return converters.infer_response(request.model, version, predictions)

    async def ListModels(
        self, request: inference_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.ListModelsResponse:
        return inference_pb2.ListModelsResponse(
            models=[converters.model_info_to_proto(info) for info in self._core.list_models()]
        )

    async def GetModel(
        self, request: inference_pb2.GetModelRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.ModelInfo:
        return converters.model_info_to_proto(self._core.get_model(request.model, request.version))

    async def ReloadModels(
        self, request: inference_pb2.ReloadModelsRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.ReloadModelsResponse:
        return converters.reload_response(await self._core.lifecycle.reload())
