"""Composition root of the logger service.

`LoggerApp(settings)`: `await start()` opens the journal (replaying its unconfirmed
tail to Kafka), starts the delivery threads, the metrics endpoint and the gRPC
server; `await stop()` flips health to NOT_SERVING, drains RPCs within `grace_s`,
delivers the journal backlog for up to `flush_timeout_s` and closes everything.
Run it with `python -m services.logger.app` (configured by PREDMESH_LOGGER_* env vars).
"""

from __future__ import annotations

import asyncio
import logging

from predmesh.common.grpcserver import GrpcServer
from predmesh.common.runner import configure_logging, serve_until_signal
from predmesh.v1 import events_pb2_grpc
from services.logger.core.journal import Journal
from services.logger.core.metrics import LoggerMetrics
from services.logger.core.pipeline import LogPipeline
from services.logger.core.producer import KafkaSink, producer_config
from services.logger.settings import LoggerSettings
from services.logger.transport.servicer import LoggerServicer

log = logging.getLogger(__name__)

SERVICE_NAME = "predmesh.v1.LoggerService"


class LoggerApp:
    """One logger: journal + Kafka pipeline + gRPC server + metrics. Used from one event loop."""

    def __init__(self, settings: LoggerSettings) -> None:
        self.settings = settings
        self.metrics = LoggerMetrics()
        config = producer_config(
            settings.bootstrap_servers,
            client_id=settings.client_id,
            compression=settings.compression,
            linger_ms=settings.linger_ms,
            delivery_timeout_ms=settings.delivery_timeout_ms,
            max_in_flight=settings.max_in_flight,
            extra=settings.kafka_extra,
        )
        self.pipeline = LogPipeline(
            Journal(settings.journal_dir, settings.segment_bytes),
            lambda on_error: KafkaSink(config, on_error),
            self.metrics,
            topic=settings.topic,
            shadow_topic=settings.shadow_topic,
            max_in_flight=settings.max_in_flight,
            delivery_timeout_s=settings.delivery_timeout_ms / 1000,
            checkpoint_interval_s=settings.checkpoint_interval_ms / 1000,
            retry_backoff_max_s=settings.retry_backoff_max_s,
            journal_max_bytes=settings.journal_max_bytes,
        )
        self.server = GrpcServer(settings, registry=self.metrics.registry)
        self.server.add_servicer(
            events_pb2_grpc.add_LoggerServiceServicer_to_server,
            LoggerServicer(self.pipeline, settings.max_event_bytes),
            SERVICE_NAME,
        )
        self._started = False

    @property
    def address(self) -> str:
        return self.server.address

    async def start(self) -> None:
        await self.pipeline.start()
        port = await self.server.start()  # also serves /metrics when metrics_port is set
        if self.settings.metrics_port is not None:
            self.metrics.port = self.server.metrics_port
        self._started = True
        log.info(
            "logger serving on %s:%d -> kafka %s (topics %s, %s), journal %s",
            self.settings.host,
            port,
            self.settings.bootstrap_servers,
            self.settings.topic,
            self.settings.shadow_topic,
            self.settings.journal_dir,
        )

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        await self.server.stop()
        await self.pipeline.stop(self.settings.flush_timeout_s)
        self.metrics.close()
        log.info("logger stopped")


async def _serve(settings: LoggerSettings) -> None:
    # The grpc.aio server binds to the running loop: build the app inside it.
    await serve_until_signal(LoggerApp(settings))


def main() -> None:
    settings = LoggerSettings()
    configure_logging(settings.log_level)
    asyncio.run(_serve(settings))


if __name__ == "__main__":
    main()
