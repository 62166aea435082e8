"""Composition root of the ingestion service.

`IngestApp(settings)`: `await start()` loads the registry (in a thread), opens the Redis
client, starts the consumer loop thread (`IngestLoop`) and a gRPC server with health and
`/metrics` (NOT_SERVING if the loop's thread crashes); `await stop()` flips health, stops
the loop (the in-flight batch finishes or is re-delivered later: offsets are committed only
after the Redis write) and closes Redis.
A failed start closes what it opened (predmesh.common.app.ServiceApp).
Run it with `python -m services.ingest.app` (PREDMESH_INGEST_* env vars).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack
from typing import Any

import redis
import redis.cluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from predmesh.common.app import ServiceApp, run_app
from predmesh.common.grpcserver import GrpcServer
from predmesh.common.kafka import consumer_config
from predmesh.common.metrics import expose_count
from predmesh.common.redact import redact_url
from predmesh.common.redistls import ssl_options
from predmesh.featurestore.redis_client import parse_target
from predmesh.featurestore.registry import Registry, load_registry
from services.ingest.core.cluster_writer import ClusterRedisWriter
from services.ingest.core.gates import QualityGates
from services.ingest.core.writer import RedisWriter, Writer
from services.ingest.metrics import IngestMetrics
from services.ingest.settings import IngestSettings
from services.ingest.transport.consumer import IngestLoop

log = logging.getLogger(__name__)


def ingest_consumer_config(settings: IngestSettings) -> dict[str, Any]:
    """librdkafka consumer properties: production timeouts, then `settings.kafka_extra`."""
    return consumer_config(
        settings.bootstrap_servers,
        settings.group_id,
        from_beginning=settings.from_beginning,
        overrides=settings.kafka_extra,
    )


def dlq_producer_config(settings: IngestSettings) -> dict[str, Any]:
    """Dead-letter producer: durable (acks=all, idempotent), valid for Kafka and tansu."""
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        **settings.producer_extra,
    }


class IngestApp(ServiceApp[IngestSettings]):
    """One ingestion process (a consumer-group member). Used from one event loop; the loop has its own thread."""

    name = "ingest service"

    def __init__(self, settings: IngestSettings, registry: Registry | None = None) -> None:
        super().__init__(settings)
        self._registry = registry
        self.metrics = IngestMetrics()
        self.loop: IngestLoop | None = None

    async def open(self, stack: AsyncExitStack) -> None:
        settings = self.settings
        registry = self._registry
        if registry is None:
            registry = await asyncio.to_thread(load_registry, settings.registry_path)
        writer = await asyncio.to_thread(self._writer, stack)
        loop = IngestLoop(
            ingest_consumer_config(settings),
            dlq_producer_config(settings),
            settings.topic,
            settings.dlq_topic,
            QualityGates(registry, settings.max_entity_id_length, settings.max_future_s),
            writer,
            self.metrics,
            batch_max=settings.batch_max_events,
            poll_timeout_s=settings.poll_timeout_ms / 1000.0,
            retry_backoff_s=settings.retry_backoff_ms / 1000.0,
            lag_interval_s=settings.lag_interval_s,
        )
        stack.push_async_callback(asyncio.to_thread, loop.stop)
        crashed = asyncio.Event()
        event_loop = asyncio.get_running_loop()

        def on_crash() -> None:  # called from the consumer thread
            with contextlib.suppress(RuntimeError):  # the event loop is already closed
                event_loop.call_soon_threadsafe(crashed.set)

        loop.on_crash = on_crash
        await asyncio.to_thread(loop.start)
        self.loop = loop
        server = await self.serve(stack, GrpcServer(settings, registry=self.metrics.registry))
        watchdog = asyncio.create_task(self._watch(crashed, server), name="ingest-watchdog")
        stack.push_async_callback(_cancel, watchdog)
        log.info(
            "ingesting %s from %s into %s (dead letters: %s)",
            settings.topic,
            settings.bootstrap_servers,
            redact_url(settings.redis_url),
            settings.dlq_topic,
        )

    def _writer(self, stack: AsyncExitStack) -> Writer:
        """The Redis client and writer of `redis_url` (blocking: a cluster client reads the slot map).

        `redis+cluster://` (or `redis_cluster`): a Redis Cluster, one pipeline per master."""
        settings = self.settings
        timeout_s = settings.redis_timeout_ms / 1000.0
        target = parse_target(settings.redis_url, settings.redis_cluster)
        options = {
            "socket_timeout": timeout_s,
            "socket_connect_timeout": timeout_s,
            **ssl_options(target.url, settings.redis_tls),
        }
        if not target.cluster:
            client = redis.Redis.from_url(target.url, **options)
            stack.push_async_callback(asyncio.to_thread, client.close)
            return RedisWriter(client, settings.invalidate_cache)
        cluster = redis.cluster.RedisCluster.from_url(target.url, retry=Retry(NoBackoff(), 1), **options)
        stack.push_async_callback(asyncio.to_thread, cluster.close)
        writer = ClusterRedisWriter(cluster, settings.invalidate_cache)
        stack.push_async_callback(asyncio.to_thread, writer.close)
        registry = self.metrics.registry
        expose_count(
            stack,
            registry,
            "predmesh_ingest_redis_cluster_fallbacks",
            "Batches the per-master fast path could not write (MOVED/ASK, a dead master): "
            "sent through the cluster client.",
            lambda: writer.fallbacks,
        )
        expose_count(
            stack,
            registry,
            "predmesh_ingest_redis_cluster_refreshes",
            "Slot-map re-reads after a batch failed on both paths (a failover in progress).",
            lambda: writer.refreshes,
        )
        return writer

    @staticmethod
    async def _watch(crashed: asyncio.Event, server: GrpcServer) -> None:
        """Health NOT_SERVING once the consumer thread has crashed (the pod must be restarted)."""
        await crashed.wait()
        log.error("the ingest consumer thread crashed: reporting NOT_SERVING")
        await server.set_serving(False)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def main() -> None:
    run_app(IngestSettings, IngestApp)


if __name__ == "__main__":
    main()
