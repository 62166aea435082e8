"""Composition root of the features service.

`FeaturesApp(settings)` wires registry, Redis store, read coalescer, cache, assembler and
gRPC server.
Lifecycle (predmesh.common.app.ServiceApp): `await start()` loads the registry (in a
thread), opens the Redis pool and serves; `await stop()` flips health to NOT_SERVING,
drains in-flight RPCs for `grace_s`, then closes the Redis pool. A failed start closes
what it opened. `port`/`address` are valid after `start()`.
Run it with `python -m services.features.app`.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

from predmesh.common import telemetry
from predmesh.common.app import ServiceApp, run_app
from predmesh.common.grpcserver import GrpcServer
from predmesh.common.metrics import expose_count
from predmesh.common.redact import redact_url
from predmesh.featurestore.registry import Registry, load_registry
from services.features.core.assembler import FeatureAssembler, Limits
from services.features.core.cache import EntityCache
from services.features.core.coalescer import ReadCoalescer
from services.features.core.store import EntityReader, RedisFeatureStore
from services.features.errors import StoreUnavailable
from services.features.metrics import FeaturesMetrics
from services.features.settings import FeaturesSettings
from services.features.transport.servicer import SERVICE_NAME, FeatureServicer, register

log = logging.getLogger(__name__)


class FeaturesApp(ServiceApp[FeaturesSettings]):
    """The features service: one gRPC server, one Redis connection pool (lifecycle: ServiceApp)."""

    name = "features service"

    def __init__(self, settings: FeaturesSettings, registry: Registry | None = None) -> None:
        super().__init__(settings)
        self._registry = registry
        self.cache: EntityCache | None = None
        self.metrics = FeaturesMetrics()

    async def open(self, stack: AsyncExitStack) -> None:
        settings = self.settings
        registry = self._registry
        if registry is None:
            path = settings.registry_path
            registry = await asyncio.to_thread(load_registry, path)
            log.info("loaded feature registry %s (entity types: %s)", path, ", ".join(registry.entity_types))
        self._registry = registry
        store = RedisFeatureStore.from_url(
            settings.redis_url,
            timeout_s=settings.redis_timeout_ms / 1000.0,
            max_connections=settings.redis_max_connections,
            retries=settings.redis_retries,
            tls=settings.redis_tls,
            cluster=settings.redis_cluster,
            cluster_fast_path=settings.redis_cluster_fast_path,
        )
        stack.push_async_callback(store.close)
        try:
            await store.ping()
        except StoreUnavailable as err:
            # Serve anyway: requests fail UNAVAILABLE until Redis is back, and the gateway degrades.
            log.warning("Redis not reachable at start (%s); serving anyway", err)
        server = GrpcServer(settings, registry=self.metrics.registry)  # sets up tracing when configured
        if store.clustered:
            expose_count(
                stack,
                self.metrics.registry,
                "predmesh_features_redis_cluster_fallbacks",
                "Reads the per-master fast path could not serve (MOVED/ASK, a dead master): "
                "sent through the cluster client.",
                lambda: store.cluster_fallbacks,
            )
        reader: EntityReader = store
        if settings.redis_coalesce:
            coalescer = ReadCoalescer(
                store.read,
                max_keys=settings.redis_coalesce_max_keys,
                max_inflight=settings.redis_coalesce_max_inflight,
                observe=self.metrics.observe_read,
                traced=telemetry.tracing_enabled(),
            )
            stack.push_async_callback(coalescer.aclose)  # before the store closes (LIFO)
            reader = coalescer
        if settings.cache_ttl_ms > 0 and settings.cache_max_entries > 0:
            self.cache = EntityCache(settings.cache_ttl_ms / 1000.0, settings.cache_max_entries)
        assembler = FeatureAssembler(
            registry,
            reader,
            self.cache,
            Limits(max_entities=settings.max_entities, max_entity_id_length=settings.max_entity_id_length),
            self.metrics,
        )
        server.add_servicer(register, FeatureServicer(assembler), SERVICE_NAME)
        await self.serve(stack, server)
        log.info("features service listening on %s (redis %s)", server.address, redact_url(settings.redis_url))


def main() -> None:
    run_app(FeaturesSettings, FeaturesApp)


if __name__ == "__main__":
    main()
