"""Composition root of the analytics sink.

`SinkApp(settings)`: `await start()` opens the store (embedded chdb under `chdb_path`, or a
ClickHouse server) and creates the tables, starts the Kafka consumer thread (batched inserts),
the rollout controller loop (on `routing_path`, or on the routing ConfigMap with
`routing_backend` configmap), a local OTLP trace receiver (when
`otlp_port` is set) and a gRPC server with AnalyticsService, health and `/metrics`; `await stop()`
flips health, stops the controller and the receiver, flushes and stops the consumer and closes the
store (predmesh.common.app.ServiceApp).
Run it with `python -m services.sink.app` (PREDMESH_SINK_* env vars).
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
from predmesh.v1 import analytics_pb2_grpc
from services.sink.core.controller import RolloutController
from services.sink.core.evidence import AnalyticsEvidence, EvidenceSource, PrometheusEvidence
from services.sink.core.routing_store import FileRoutingStore, RoutingStore
from services.sink.core.schema import create_statements
from services.sink.core.store import AnalyticsStore
from services.sink.metrics import SinkMetrics
from services.sink.settings import SinkSettings
from services.sink.transport.consumer import LogConsumer
from services.sink.transport.otlp import OtlpReceiver
from services.sink.transport.servicer import AnalyticsServicer

log = logging.getLogger(__name__)


def open_store(settings: SinkSettings) -> AnalyticsStore:
    """The configured store with its tables created (blocking)."""
    store: AnalyticsStore
    if settings.backend == "chdb":
        from services.sink.backends.chdb_store import ChdbStore

        store = ChdbStore(settings.chdb_path, settings.database)
    else:
        from services.sink.backends.clickhouse_store import ClickHouseStore

        store = ClickHouseStore(
            settings.clickhouse_url,
            settings.clickhouse_user,
            settings.clickhouse_password.get_secret_value(),
            settings.database,
        )
    try:
        for statement in create_statements(settings.database):
            store.command(statement)
    except BaseException:
        store.close()
        raise
    return store


def routing_store(settings: SinkSettings) -> RoutingStore | None:
    """The routing table the rollout controller runs on; None = no controller."""
    if settings.routing_backend == "file":
        return None if settings.routing_path is None else FileRoutingStore(settings.routing_path)
    from services.sink.backends.kube_configmap import ConfigMapRoutingStore, KubeApi

    if not settings.routing_configmap:
        raise ValueError("routing_backend configmap needs routing_configmap (the ConfigMap's name)")
    sa_dir = settings.kube_service_account_dir
    namespace = settings.kube_namespace or (sa_dir / "namespace").read_text().strip()
    api = KubeApi.in_cluster(settings.kube_api_url, sa_dir, settings.kube_timeout_s)
    return ConfigMapRoutingStore(api, namespace, settings.routing_configmap, settings.routing_configmap_key)


def evidence_source(settings: SinkSettings, store: AnalyticsStore) -> EvidenceSource:
    """The rollout controller's evidence: the store, or Prometheus (+ the store for outcomes)."""
    analytics = AnalyticsEvidence(store)
    if settings.rollout_evidence == "analytics":
        return analytics
    from services.sink.backends.prometheus_api import PrometheusApi

    if not settings.prometheus_url:
        raise ValueError("rollout_evidence prometheus needs prometheus_url")
    api = PrometheusApi(
        settings.prometheus_url,
        settings.prometheus_timeout_s,
        settings.prometheus_auth_header.get_secret_value(),
        settings.prometheus_ca_file,
    )
    return PrometheusEvidence(api.query, analytics, settings.prometheus_selector)


def sink_consumer_config(settings: SinkSettings) -> dict[str, Any]:
    return consumer_config(
        settings.bootstrap_servers,
        settings.group_id,
        from_beginning=settings.from_beginning,
        overrides=settings.kafka_extra,
    )


class SinkApp(ServiceApp[SinkSettings]):
    """One sink process. Used from one event loop; the consumer runs in its own thread."""

    name = "sink"

    def __init__(self, settings: SinkSettings) -> None:
        super().__init__(settings)
        self.metrics = SinkMetrics()
        self.store: AnalyticsStore | None = None
        self.consumer: LogConsumer | None = None
        self.controller: RolloutController | None = None
        self.otlp: OtlpReceiver | None = None

    async def open(self, stack: AsyncExitStack) -> None:
        s = self.settings
        store = await asyncio.to_thread(open_store, s)
        stack.push_async_callback(asyncio.to_thread, store.close)
        self.store = store
        consumer = LogConsumer(
            sink_consumer_config(s),
            list(s.topics),
            store,
            s.batch_max_rows,
            s.batch_max_wait_ms / 1e3,
            webhook_topic=s.webhook_topic,
        )
        stack.push_async_callback(asyncio.to_thread, consumer.stop)
        await asyncio.to_thread(consumer.start)
        self.consumer = consumer
        if s.otlp_port is not None:
            receiver = OtlpReceiver(store, s.host, s.otlp_port)
            stack.push_async_callback(receiver.stop, s.grace_s)
            await receiver.start()
            self.otlp = receiver
        tasks = [asyncio.create_task(self._export_forever(), name="sink-metrics")]
        routing = routing_store(s)
        if routing is not None:
            source = evidence_source(s, store)
            self.controller = RolloutController(
                store, routing, self.metrics.decision, evidence=source, on_evidence_error=self.metrics.evidence_error
            )
            log.info("rollout controller on %r, evidence from %s", routing, source.name)
            tasks.append(asyncio.create_task(self._control_forever(), name="rollout-controller"))
        for task in tasks:
            stack.push_async_callback(_cancel, task)
        server = GrpcServer(s, registry=self.metrics.registry)
        server.add_servicer(
            analytics_pb2_grpc.add_AnalyticsServiceServicer_to_server,
            AnalyticsServicer(store, s.query_max_rows),
            "predmesh.v1.AnalyticsService",
        )
        await self.serve(stack, server)
        log.info("sink consuming %s from %s into %s (%s)", s.topics, s.bootstrap_servers, s.database, s.backend)

    async def _export_forever(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.consumer is not None:
                st = self.consumer.stats
                self.metrics.rows.set(st.inserted)
                self.metrics.consumed.set(st.consumed)
                self.metrics.insert_failures.set(st.insert_failures)

    async def _control_forever(self) -> None:
        assert self.controller is not None
        while True:
            await asyncio.sleep(self.settings.rollout_interval_s)
            try:
                await asyncio.to_thread(self.controller.evaluate_once)
            except Exception:
                log.exception("rollout evaluation failed")


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def main() -> None:
    run_app(SinkSettings, SinkApp)


if __name__ == "__main__":
    main()
