"""Gateway composition root: builds clients, core and server; owns their lifecycle."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc

from predmesh.clients.logger import LoggerClient
from predmesh.common import telemetry
from predmesh.common.grpcclient import insecure_channel
from predmesh.common.grpcserver import GrpcServer
from predmesh.common.runner import configure_logging, serve_until_signal
from predmesh.v1 import prediction_pb2_grpc
from services.gateway.core.async_jobs import AsyncDispatcher
from services.gateway.core.auth import ApiKeyAuthorizer
from services.gateway.core.breaker import BreakerRegistry
from services.gateway.core.catalog import ModelCatalog
from services.gateway.core.ports import PredictionSink
from services.gateway.core.predictor import Predictor, PredictorLimits
from services.gateway.core.routing_source import RoutingFileWatcher
from services.gateway.metrics import GatewayMetrics
from services.gateway.settings import GatewaySettings
from services.gateway.transport.logsink import LoggerSink
from services.gateway.transport.servicer import PredictionServicer
from services.gateway.transport.upstreams import CallbackClient, FeaturesClient, InferenceClient

log = logging.getLogger(__name__)


class GatewayApp:
    """Lifecycle: `await start()` opens upstream channels, loads routing and serves;
    `await stop()` flips health, drains RPCs, async jobs and shadows, flushes the log, closes channels.

    `sink` replaces the logger client (tests); otherwise one is created when `logger_target` is set.
    """

    def __init__(self, settings: GatewaySettings, sink: PredictionSink | None = None) -> None:
        self.settings = settings
        self._sink = sink
        self.metrics = GatewayMetrics()
        self.predictor: Predictor | None = None
        self.metrics_port = 0
        self._channels: list[grpc.aio.Channel] = []
        self._server: GrpcServer | None = None
        self._dispatcher: AsyncDispatcher | None = None
        self._callbacks = CallbackClient()
        self._logger: LoggerClient | None = None
        self._watcher: RoutingFileWatcher | None = None

    @property
    def port(self) -> int:
        return self._server.port if self._server else 0

    @property
    def address(self) -> str:
        return self._server.address if self._server else ""

    async def start(self) -> None:
        s = self.settings
        telemetry.configure_tracing(s)  # before the channels: they get tracing interceptors only when on
        if self._sink is None and s.logger_target:
            self._logger = LoggerClient(s.logger_target, max_pending=s.logger_buffer)
            await self._logger.start()
            self._sink = LoggerSink(self._logger)
        features_channel = insecure_channel(s.features_target)
        inference_channel = insecure_channel(s.inference_target)
        self._channels = [features_channel, inference_channel]
        models = InferenceClient(inference_channel)
        self.predictor = predictor = Predictor(
            features=FeaturesClient(features_channel),
            models=models,
            catalog=ModelCatalog(models, s.model_cache_ttl_ms / 1e3),
            sink=self._sink,
            limits=PredictorLimits(
                features_timeout_s=s.features_timeout_ms / 1e3,
                inference_timeout_s=s.inference_timeout_ms / 1e3,
                features_timeout_per_item_s=s.features_timeout_per_item_ms / 1e3,
                inference_timeout_per_item_s=s.inference_timeout_per_item_ms / 1e3,
                max_batch_items=s.max_batch_items,
                min_inference_budget_s=s.min_inference_budget_ms / 1e3,
                max_shadow_inflight=s.max_shadow_inflight,
                log_features_sample=s.log_features_sample,
            ),
            breakers=BreakerRegistry(s.breaker_failures, s.breaker_reset_ms / 1e3),
            metrics=self.metrics,
        )
        if s.routing_path:
            self._watcher = RoutingFileWatcher(
                Path(s.routing_path),
                predictor.set_routing,
                s.routing_poll_ms / 1e3,
                lambda result: self.metrics.routing_reloads.labels(result).inc(),
            )
            await self._watcher.start()
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
        self._server = GrpcServer(s, registry=self.metrics.registry)
        self._server.add_servicer(
            prediction_pb2_grpc.add_PredictionServiceServicer_to_server,
            servicer,
            "predmesh.v1.PredictionService",
        )
        await self._server.start()
        self.metrics_port = self._server.metrics_port
        log.info("gateway serving on %s", self._server.address)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
        if self._watcher is not None:
            await self._watcher.stop()
        if self._dispatcher is not None:
            await self._dispatcher.drain(self.settings.grace_s)
        if self.predictor is not None:
            await self.predictor.drain(self.settings.grace_s)
        if self._logger is not None:
            await self._logger.stop(timeout_s=self.settings.grace_s)
        await self._callbacks.close()
        await asyncio.gather(*(ch.close() for ch in self._channels))
        self._channels = []


def main() -> None:
    settings = GatewaySettings()
    configure_logging(settings.log_level)
    asyncio.run(serve_until_signal(GatewayApp(settings)))


if __name__ == "__main__":
    main()
