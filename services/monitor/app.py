"""Composition root of the drift monitor.

`MonitorApp(settings)`: `await start()` starts the Kafka consumer thread (feeding the
`DriftMonitor` windows), the evaluation task (gauges every `evaluate_interval_s`) and a
gRPC server with health and `/metrics`; `await stop()` flips health, stops the task and
the consumer. Run it with `python -m services.monitor.app` (PREDMESH_MONITOR_* env vars).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from predmesh.common.grpcserver import GrpcServer
from predmesh.common.kafka import consumer_config
from predmesh.common.runner import configure_logging, serve_until_signal
from services.monitor.core.reference import ReferenceStore
from services.monitor.core.windows import DriftMonitor, WindowStats
from services.monitor.metrics import MonitorMetrics
from services.monitor.settings import MonitorSettings
from services.monitor.transport.consumer import EventConsumer

log = logging.getLogger(__name__)


def monitor_consumer_config(settings: MonitorSettings) -> dict[str, Any]:
    """librdkafka consumer properties: production timeouts, then `settings.kafka_extra`."""
    return consumer_config(
        settings.bootstrap_servers,
        settings.group_id,
        from_beginning=settings.from_beginning,
        overrides=settings.kafka_extra,
    )


class MonitorApp:
    """One monitor process. Used from one event loop; the consumer runs in its own thread."""

    def __init__(self, settings: MonitorSettings) -> None:
        self.settings = settings
        self.metrics = MonitorMetrics()
        self.monitor = DriftMonitor(
            ReferenceStore(settings.model_repository, settings.reference_ttl_s),
            window_s=settings.window_s,
            min_events=settings.min_events,
            max_events=settings.max_events,
        )
        self._consumer = EventConsumer(
            monitor_consumer_config(settings),
            settings.topic,
            self.monitor.observe,
            on_record=self._count,
        )
        self.server = GrpcServer(settings, registry=self.metrics.registry)
        self._task: asyncio.Task[None] | None = None
        self.last: list[WindowStats] = []

    def _count(self, ok: bool) -> None:
        (self.metrics.consumed if ok else self.metrics.undecodable).inc()

    @property
    def metrics_port(self) -> int:
        return self.server.metrics_port

    async def start(self) -> None:
        await asyncio.to_thread(self._consumer.start)
        await self.server.start()
        self._task = asyncio.create_task(self._evaluate_forever(), name="monitor-evaluate")
        log.info("monitor consuming %s from %s", self.settings.topic, self.settings.bootstrap_servers)

    async def evaluate(self) -> list[WindowStats]:
        """Recompute the window statistics and gauges now (also run periodically)."""
        stats = await asyncio.to_thread(self.monitor.evaluate)
        self.metrics.update(stats, self.settings.psi_alert)
        self.last = stats
        return stats

    async def _evaluate_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.evaluate_interval_s)
            try:
                await self.evaluate()
            except Exception:
                log.exception("monitor evaluation failed")

    async def stop(self) -> None:
        await self.server.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await asyncio.to_thread(self._consumer.stop)


async def _serve(settings: MonitorSettings) -> None:
    # The grpc.aio server binds to the running loop: build the app inside it.
    await serve_until_signal(MonitorApp(settings))


def main() -> None:
    settings = MonitorSettings()
    configure_logging(settings.log_level)
    asyncio.run(_serve(settings))


if __name__ == "__main__":
    main()
