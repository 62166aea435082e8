"""gRPC clients for the gateway's upstreams (features, orchestrator, async callbacks).

Each client wraps one long-lived channel owned by the app (opened at start, closed at
stop); every call carries a deadline; upstream failures become PredmeshErrors.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import grpc

from predmesh.common.callback_policy import CallbackTarget
from predmesh.common.errors import InvalidArgument, PredmeshError, Unavailable
from predmesh.common.grpcclient import CHANNEL_OPTIONS, insecure_channel, upstream_error
from predmesh.v1 import (
    features_pb2,
    features_pb2_grpc,
    inference_pb2,
    inference_pb2_grpc,
    prediction_pb2,
    prediction_pb2_grpc,
)
from services.gateway.core.types import FeatureRow, InferenceResult, ModelDescriptor, PredictOutput, Scalar
from services.gateway.transport.converters import add_values, predict_response, row_scalars, score_from_pb, set_value


class FeaturesClient:
    """FeatureSource over the features service's gRPC API."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = features_pb2_grpc.FeatureServiceStub(channel)

    async def get(
        self,
        entity_type: str,
        entities: Sequence[tuple[str, dict[str, Scalar]]],
        features: Sequence[str],
        timeout_s: float,
        related: Sequence[Mapping[str, str]] | None = None,
    ) -> list[FeatureRow]:
        request = features_pb2.GetFeaturesRequest(
            entity_type=entity_type,
            features=list(features),
            related=[features_pb2.RelatedEntities(ids=ids) for ids in related] if related else [],
        )
        add_entity = request.entities.add
        for entity_id, context in entities:
            values = add_entity(entity_id=entity_id).context
            for name, value in context.items():
                set_value(values[name], value)
        try:
            response = await self._stub.GetFeatures(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as err:
            raise upstream_error(err, "features") from err
        try:
            return [
                FeatureRow(
                    entity_id=vec.entity_id,
                    values=row_scalars(vec.values, features),
                    missing=tuple(vec.missing),
                    invalid=tuple(vec.invalid),
                    entity_unknown=vec.entity_unknown,
                    store_missing=tuple(vec.store_missing),
                    stale=tuple(vec.stale),
                )
                for vec in response.vectors
            ]
        except (InvalidArgument, ValueError) as err:
            # The caller's request was fine: a malformed answer is the dependency's failure.
            raise Unavailable(f"features service sent a malformed response: {err}") from err


class InferenceClient:
    """ModelRunner over the orchestrator's gRPC API."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = inference_pb2_grpc.InferenceServiceStub(channel)

    async def describe(self, model: str, version: str, timeout_s: float) -> ModelDescriptor:
        try:
            info = await self._stub.GetModel(
                inference_pb2.GetModelRequest(model=model, version=version), timeout=timeout_s
            )
        except grpc.aio.AioRpcError as err:
            raise upstream_error(err, "inference") from err
        return ModelDescriptor(
            name=info.name,
            version=info.version,
            entity_type=info.entity_type,
            features=tuple(info.features),
            task=info.task,
        )

    async def infer(
        self,
        model: str,
        version: str,
        features: Sequence[str],
        rows: Sequence[Sequence[Scalar]],
        request_id: str,
        timeout_s: float,
        priority: int = 0,
    ) -> InferenceResult:
        request = inference_pb2.InferRequest(
            priority=priority,  # type: ignore[arg-type]
            request_id=request_id,
            model=model,
            version=version,
            feature_names=list(features),
        )
        add_row = request.rows.add
        for row in rows:
            add_values(add_row().values, row)
        try:
            response = await self._stub.Infer(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as err:
            raise upstream_error(err, "inference") from err
        return InferenceResult(
            version=response.model_version, scores=tuple(score_from_pb(p) for p in response.predictions)
        )


class CallbackClient:
    """Delivers PredictAsync results to callers' PredictionCallback servers.

    Dials the address the callback policy checked (never re-resolves the name), with TLS and
    the target's host as authority/server name when the target asked for TLS. Keeps at most
    `max_channels` channels open; the least recently used one is closed in the background
    (its in-flight deliveries get `close_grace_s`), never inside an unrelated delivery.
    `close()` closes everything, including channels still closing.
    """

    def __init__(self, max_channels: int = 64, close_grace_s: float = 1.0) -> None:
        self._channels: OrderedDict[tuple[str, str, bool], grpc.aio.Channel] = OrderedDict()
        self._max = max_channels
        self._close_grace_s = close_grace_s
        self._closing: set[asyncio.Task[None]] = set()

    def _open(self, target: CallbackTarget) -> grpc.aio.Channel:
        if not target.tls:
            return insecure_channel(target.dial)
        options = [
            *CHANNEL_OPTIONS,
            ("grpc.ssl_target_name_override", target.host),
            ("grpc.default_authority", f"{target.host}:{target.port}"),
        ]
        return grpc.aio.secure_channel(target.dial, grpc.ssl_channel_credentials(), options=options)

    def _channel(self, target: CallbackTarget) -> grpc.aio.Channel:
        key = (target.dial, target.host, target.tls)
        channel = self._channels.pop(key, None) or self._open(target)
        self._channels[key] = channel
        while len(self._channels) > self._max:
            _, old = self._channels.popitem(last=False)
            task = asyncio.get_running_loop().create_task(old.close(grace=self._close_grace_s))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        return channel

    async def deliver(
        self,
        target: CallbackTarget,
        request_id: str,
        output: PredictOutput | None,
        error: PredmeshError | None,
        timeout_s: float,
    ) -> None:
        delivery = prediction_pb2.CallbackDelivery(request_id=request_id)
        if output is not None:
            delivery.response.CopyFrom(predict_response(output))
        if error is not None:
            delivery.error_code = error.code.value
            delivery.error_message = error.message
        stub = prediction_pb2_grpc.PredictionCallbackStub(self._channel(target))
        await stub.OnPrediction(delivery, timeout=timeout_s)

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), OrderedDict()
        for channel in channels:
            await channel.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
