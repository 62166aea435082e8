"""Composition root of the logger service.

`LoggerApp(settings)`: `await start()` opens the journal (replaying its unconfirmed
tail to Kafka), starts the delivery threads, the metrics endpoint and the gRPC
server, and keeps gRPC health in step with `pipeline.healthy` (NOT_SERVING while the
journal has failed or is full, or delivery keeps failing); `await stop()` flips health
to NOT_SERVING, drains RPCs within `grace_s`, delivers the journal backlog for up to
`flush_timeout_s` and closes everything. A failed start closes what it opened
(predmesh.common.app.ServiceApp).
Run it with `python -m services.logger.app` (configured by PREDMESH_LOGGER_* env vars).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack

from predmesh.common.app import ServiceApp, run_app
from predmesh.common.grpcserver import GrpcServer
from predmesh.v1 import events_pb2_grpc
from services.logger.core.journal import Journal
from services.logger.core.metrics import LoggerMetrics
from services.logger.core.pipeline import LogPipeline
from services.logger.core.producer import KafkaSink, producer_config
from services.logger.settings import LoggerSettings
from services.logger.transport.servicer import LoggerServicer

log = logging.getLogger(__name__)

SERVICE_NAME = "predmesh.v1.LoggerService"


class LoggerApp(ServiceApp[LoggerSettings]):
    """One logger: journal + Kafka pipeline + gRPC server + metrics. Used from one event loop."""

    name = "logger"

    def __init__(self, settings: LoggerSettings) -> None:
        super().__init__(settings)
        self.metrics = LoggerMetrics()
        self.pipeline: LogPipeline | None = None

    async def open(self, stack: AsyncExitStack) -> None:
        settings = self.settings
        config = producer_config(
            settings.bootstrap_servers,
            client_id=settings.client_id,
            compression=settings.compression,
            linger_ms=settings.linger_ms,
            delivery_timeout_ms=settings.delivery_timeout_ms,
            max_in_flight=settings.max_in_flight,
            extra=settings.kafka_extra,
        )
        pipeline = LogPipeline(
            Journal(settings.journal_dir, settings.segment_bytes),
            lambda on_error: KafkaSink(config, on_error),
            self.metrics,
            topic=settings.topic,
            shadow_topic=settings.shadow_topic,
            outcome_topic=settings.outcome_topic,
            max_in_flight=settings.max_in_flight,
            delivery_timeout_s=settings.delivery_timeout_ms / 1000,
            checkpoint_interval_s=settings.checkpoint_interval_ms / 1000,
            retry_backoff_max_s=settings.retry_backoff_max_s,
            journal_max_bytes=settings.journal_max_bytes,
        )
        stack.callback(self.metrics.close)
        # Stopped after the server has drained: the backlog goes to Kafka for up to flush_timeout_s.
        stack.push_async_callback(pipeline.stop, settings.flush_timeout_s)
        self.pipeline = pipeline
        await pipeline.start()
        server = GrpcServer(settings, registry=self.metrics.registry)
        server.add_servicer(
            events_pb2_grpc.add_LoggerServiceServicer_to_server,
            LoggerServicer(pipeline, settings.max_event_bytes),
            SERVICE_NAME,
        )
        await self.serve(stack, server)  # also serves /metrics when metrics_port is set
        if settings.metrics_port is not None:
            self.metrics.port = server.metrics_port
        health = asyncio.create_task(_follow_pipeline_health(pipeline, server))
        stack.push_async_callback(_cancel, health)  # closed first, before the server stops
        log.info(
            "logger serving on %s -> kafka %s (topics %s, %s), journal %s",
            server.address,
            settings.bootstrap_servers,
            settings.topic,
            settings.shadow_topic,
            settings.journal_dir,
        )


async def _follow_pipeline_health(pipeline: LogPipeline, server: GrpcServer, interval_s: float = 0.5) -> None:
    serving = True
    while True:
        await asyncio.sleep(interval_s)
        healthy = pipeline.healthy
        if healthy != serving:
            serving = healthy
            log.log(
                logging.INFO if healthy else logging.ERROR, "logger health: %s", "SERVING" if healthy else "NOT_SERVING"
            )
            await server.set_serving(healthy)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def main() -> None:
    run_app(LoggerSettings, LoggerApp)


if __name__ == "__main__":
    main()
