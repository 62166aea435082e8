"""Composition root of the drift monitor.

`MonitorApp(settings)`: `await start()` starts the Kafka consumer thread (feeding the
`DriftMonitor` windows), the evaluation task (gauges every `evaluate_interval_s`) and a
gRPC server with health and `/metrics`; `await stop()` flips health, stops the task and
the consumer. A failed start closes what it opened (predmesh.common.app.ServiceApp).
Run it with `python -m services.monitor.app` (PREDMESH_MONITOR_* env vars).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack
from typing import Any

from predmesh.common.app import ServiceApp, run_app
from predmesh.common.grpcserver import GrpcServer
from predmesh.common.kafka import consumer_config
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


class MonitorApp(ServiceApp[MonitorSettings]):
    """One monitor process. Used from one event loop; the consumer runs in its own thread."""

    name = "monitor"

    def __init__(self, settings: MonitorSettings) -> None:
        super().__init__(settings)
        self.metrics = MonitorMetrics()
        self.monitor = DriftMonitor(
            ReferenceStore(settings.model_repository, settings.reference_ttl_s),
            window_s=settings.window_s,
            min_events=settings.min_events,
            max_events=settings.max_events,
        )
        self.last: list[WindowStats] = []

    def _count(self, ok: bool) -> None:
        (self.metrics.consumed if ok else self.metrics.undecodable).inc()

    async def open(self, stack: AsyncExitStack) -> None:
        settings = self.settings
        consumer = EventConsumer(
            monitor_consumer_config(settings), settings.topic, self.monitor.observe, on_record=self._count
        )
        stack.push_async_callback(asyncio.to_thread, consumer.stop)
        await asyncio.to_thread(consumer.start)
        task = asyncio.create_task(self._evaluate_forever(), name="monitor-evaluate")
        stack.push_async_callback(_cancel, task)
        await self.serve(stack, GrpcServer(settings, registry=self.metrics.registry))
        log.info("monitor consuming %s from %s", settings.topic, settings.bootstrap_servers)

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


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def main() -> None:
    run_app(MonitorSettings, MonitorApp)


if __name__ == "__main__":
    main()
