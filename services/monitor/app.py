"""Composition root of the drift monitor.

`MonitorApp(settings)`: `await start()` starts the Kafka consumer thread (feeding the
`DriftMonitor` windows), the evaluation task (gauges every `evaluate_interval_s`; with
`retrain_webhook_url`, a delivery task per drift event, services/monitor/transport/webhook.py,
each call recorded to `webhook_topic` for the analytics store, transport/webhook_log.py)
and a gRPC server with health and `/metrics`; `await stop()` flips health, stops the tasks
(pending webhook retries are cancelled) and the consumer. A failed start closes what it
opened (predmesh.common.app.ServiceApp).
Run it with `python -m services.monitor.app` (PREDMESH_MONITOR_* env vars).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import urlsplit

from predmesh.common.app import ServiceApp, run_app
from predmesh.common.callback_policy import CallbackPolicy
from predmesh.common.grpcserver import GrpcServer
from predmesh.common.kafka import consumer_config, durable_producer_config
from predmesh.common.metrics import expose_count, expose_gauge
from services.monitor.core.reference import ReferenceStore
from services.monitor.core.retrain import DriftTrigger
from services.monitor.core.windows import DriftMonitor, Observation, WindowStats
from services.monitor.metrics import MonitorMetrics
from services.monitor.settings import MonitorSettings
from services.monitor.transport.consumer import EventConsumer
from services.monitor.transport.webhook import RetrainWebhook
from services.monitor.transport.webhook_log import WebhookRecorder

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
        self.recorder = webhook_recorder(settings)
        self.webhook = retrain_webhook(settings, self.metrics.webhook_result, self.recorder)
        self._trigger = DriftTrigger(settings.retrain_webhook_cooldown_s)
        self._deliveries: set[asyncio.Task[bool]] = set()

    def _observe(self, obs: Observation) -> None:
        self.monitor.observe(obs)
        self.metrics.observe(obs)

    def _count(self, ok: bool) -> None:
        (self.metrics.consumed if ok else self.metrics.undecodable).inc()

    async def open(self, stack: AsyncExitStack) -> None:
        settings = self.settings
        consumer = EventConsumer(
            monitor_consumer_config(settings), settings.topic, self._observe, on_record=self._count
        )
        stack.push_async_callback(asyncio.to_thread, consumer.stop)
        await asyncio.to_thread(consumer.start)
        task = asyncio.create_task(self._evaluate_forever(), name="monitor-evaluate")
        stack.push_async_callback(_cancel, task)
        if self.recorder is not None:
            recorder = self.recorder
            retries = asyncio.create_task(recorder.run_retries(), name="monitor-webhook-records")
            stack.push_async_callback(_cancel, retries)
            registry = self.metrics.registry
            expose_gauge(
                stack,
                registry,
                "predmesh_monitor_webhook_records_pending",
                "Retraining-webhook call records not yet acknowledged by Kafka (sent again every 30 s).",
                lambda: len(recorder.backlog),
            )
            expose_count(
                stack,
                registry,
                "predmesh_monitor_webhook_records_dropped",
                "Retraining-webhook call records dropped from a full backlog (never stored).",
                lambda: recorder.dropped,
            )
        stack.push_async_callback(self._cancel_deliveries)
        await self.serve(stack, GrpcServer(settings, registry=self.metrics.registry))
        log.info("monitor consuming %s from %s", settings.topic, settings.bootstrap_servers)

    async def evaluate(self) -> list[WindowStats]:
        """Recompute the window statistics and gauges now (also run periodically)."""
        stats = await asyncio.to_thread(self.monitor.evaluate)
        self.metrics.update(stats, self.settings.psi_alert)
        self.last = stats
        if self.webhook is not None:
            for event in self._trigger.fire(stats, self.settings.psi_alert, time.time()):
                delivery = asyncio.create_task(self.webhook.deliver(event), name=f"retrain-webhook-{event.model}")
                self._deliveries.add(delivery)
                delivery.add_done_callback(self._deliveries.discard)
        return stats

    async def _cancel_deliveries(self) -> None:
        for delivery in list(self._deliveries):
            delivery.cancel()
        await asyncio.gather(*self._deliveries, return_exceptions=True)

    async def _evaluate_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.evaluate_interval_s)
            try:
                await self.evaluate()
            except Exception:
                log.exception("monitor evaluation failed")


def webhook_recorder(settings: MonitorSettings) -> WebhookRecorder | None:
    """Where webhook calls are recorded (None without a URL or a topic)."""
    if not settings.retrain_webhook_url or not settings.webhook_topic:
        return None
    config = durable_producer_config(
        settings.bootstrap_servers, "predmesh-monitor", delivery_timeout_ms=10000, overrides=settings.producer_extra
    )
    return WebhookRecorder(config, settings.webhook_topic, timeout_s=12.0)


def retrain_webhook(
    settings: MonitorSettings, on_result: Callable[[str, bool], None], recorder: WebhookRecorder | None = None
) -> RetrainWebhook | None:
    """The retraining webhook of `settings` (None without a URL), checked by the shared callback policy;
    each call's outcome goes to `recorder` when given."""
    url = settings.retrain_webhook_url
    if not url:
        return None
    allowed = settings.retrain_webhook_allowed_hosts or [urlsplit(url).hostname or ""]
    policy = CallbackPolicy(allowed, settings.retrain_webhook_ports, settings.retrain_webhook_blocked_networks)
    return RetrainWebhook(
        url,
        policy,
        on_result,
        timeout_s=settings.retrain_webhook_timeout_ms / 1e3,
        initial_backoff_s=settings.retrain_webhook_backoff_initial_ms / 1e3,
        max_backoff_s=settings.retrain_webhook_backoff_max_s,
        horizon_s=settings.retrain_webhook_horizon_s,
        ca_file=settings.retrain_webhook_ca_file,
        on_outcome=None if recorder is None else recorder.record,
    )


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def main() -> None:
    run_app(MonitorSettings, MonitorApp)


if __name__ == "__main__":
    main()
