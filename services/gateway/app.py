"""Gateway composition root: builds clients, core and server; owns their lifecycle."""

from __future__ import annotations

import asyncio
import logging

import grpc

from predmesh.common.grpcclient import insecure_channel
from predmesh.common.grpcserver import GrpcServer
from predmesh.common.runner import configure_logging, serve_until_signal
from predmesh.v1 import prediction_pb2_grpc
from services.gateway.core.async_jobs import AsyncDispatcher
from services.gateway.core.auth import ApiKeyAuthorizer
from services.gateway.core.catalog import ModelCatalog
from services.gateway.core.ports import PredictionSink
from services.gateway.core.predictor import Predictor, PredictorLimits
from services.gateway.settings import GatewaySettings
from services.gateway.transport.servicer import PredictionServicer
from services.gateway.transport.upstreams import CallbackClient, FeaturesClient, InferenceClient

log = logging.getLogger(__name__)


class GatewayApp:
    """Lifecycle: `await start()` opens upstream channels and serves; `await stop()` drains and closes."""

    def __init__(self, settings: GatewaySettings, sink: PredictionSink | None = None) -> None:
        self.settings = settings
        self._sink = sink
        self._channels: list[grpc.aio.Channel] = []
        self._server: GrpcServer | None = None
        self._dispatcher: AsyncDispatcher | None = None
        self._callbacks = CallbackClient()

    @property
    def port(self) -> int:
        return self._server.port if self._server else 0

    @property
    def address(self) -> str:
        return self._server.address if self._server else ""

    async def start(self) -> None:
        s = self.settings
        features_channel = insecure_channel(s.features_target)
        inference_channel = insecure_channel(s.inference_target)
        self._channels = [features_channel, inference_channel]
        models = InferenceClient(inference_channel)
        predictor = Predictor(
            features=FeaturesClient(features_channel),
            models=models,
            catalog=ModelCatalog(models, s.model_cache_ttl_ms / 1e3),
            sink=self._sink,
            limits=PredictorLimits(
                features_timeout_s=s.features_timeout_ms / 1e3,
                inference_timeout_s=s.inference_timeout_ms / 1e3,
                max_batch_items=s.max_batch_items,
            ),
        )
        self._dispatcher = AsyncDispatcher(
            predictor,
            self._callbacks,
            max_pending=s.max_pending_async,
            deadline_s=s.default_deadline_ms / 1e3,
            attempts=s.callback_attempts,
            attempt_timeout_s=s.callback_timeout_ms / 1e3,
        )
        servicer = PredictionServicer(
            predictor, self._dispatcher, ApiKeyAuthorizer(s.api_keys), s.default_deadline_ms / 1e3
        )
        self._server = GrpcServer(s)
        self._server.add_servicer(
            prediction_pb2_grpc.add_PredictionServiceServicer_to_server,
            servicer,
            "predmesh.v1.PredictionService",
        )
        await self._server.start()
        log.info("gateway serving on %s", self._server.address)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
        if self._dispatcher is not None:
            await self._dispatcher.drain(self.settings.grace_s)
        await self._callbacks.close()
        await asyncio.gather(*(ch.close() for ch in self._channels))
        self._channels = []


def main() -> None:
    settings = GatewaySettings()
    configure_logging(settings.log_level)
    asyncio.run(serve_until_signal(GatewayApp(settings)))


if __name__ == "__main__":
    main()
