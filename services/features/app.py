"""Composition root of the features service.

`FeaturesApp(settings)` wires registry, Redis store, cache, assembler and gRPC server.
Lifecycle: `await start()` loads the registry (in a thread), opens the Redis pool
and serves; `await stop()` flips health to NOT_SERVING, drains in-flight RPCs for
`grace_s`, then closes the Redis pool. `port`/`address` are valid after `start()`.
Run it with `python -m services.features.app`.
"""

from __future__ import annotations

import asyncio
import logging

from predmesh.common.grpcserver import GrpcServer
from predmesh.common.runner import configure_logging, serve_until_signal
from services.features.core.assembler import FeatureAssembler, Limits
from services.features.core.cache import EntityCache
from services.features.core.registry import Registry, load_registry
from services.features.core.store import RedisFeatureStore
from services.features.errors import StoreUnavailable
from services.features.metrics import FeaturesMetrics
from services.features.settings import FeaturesSettings
from services.features.transport.servicer import SERVICE_NAME, FeatureServicer, register

log = logging.getLogger(__name__)


class FeaturesApp:
    """The features service: one gRPC server, one Redis connection pool."""

    def __init__(self, settings: FeaturesSettings | None = None, registry: Registry | None = None) -> None:
        self.settings = settings or FeaturesSettings()
        self._registry = registry
        self._store: RedisFeatureStore | None = None
        self._server: GrpcServer | None = None
        self.cache: EntityCache | None = None
        self.metrics = FeaturesMetrics()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FeaturesApp is not started")
        return self._server.port

    @property
    def metrics_port(self) -> int:
        """Bound port of /metrics (0 when `metrics_port` is unset)."""
        return self._server.metrics_port if self._server is not None else 0

    @property
    def address(self) -> str:
        if self._server is None:
            raise RuntimeError("FeaturesApp is not started")
        return self._server.address

    async def start(self) -> None:
        settings = self.settings
        registry = self._registry
        if registry is None:
            path = settings.registry_path
            registry = await asyncio.to_thread(load_registry, path)
            log.info("loaded feature registry %s (entity types: %s)", path, ", ".join(registry.entity_types))
        self._registry = registry
        timeout_s = settings.redis_timeout_ms / 1000.0
        store = RedisFeatureStore.from_url(
            settings.redis_url,
            timeout_s=timeout_s,
            max_connections=settings.redis_max_connections,
            retries=settings.redis_retries,
        )
        self._store = store
        try:
            await store.ping()
        except StoreUnavailable as err:
            # Serve anyway: requests fail UNAVAILABLE until Redis is back, and the gateway degrades.
            log.warning("Redis not reachable at start (%s); serving anyway", err)
        if settings.cache_ttl_ms > 0 and settings.cache_max_entries > 0:
            self.cache = EntityCache(settings.cache_ttl_ms / 1000.0, settings.cache_max_entries)
        assembler = FeatureAssembler(
            registry,
            store,
            self.cache,
            Limits(max_entities=settings.max_entities, max_entity_id_length=settings.max_entity_id_length),
            self.metrics,
        )
        server = GrpcServer(settings, registry=self.metrics.registry)
        server.add_servicer(register, FeatureServicer(assembler), SERVICE_NAME)
        try:
            await server.start()
        except BaseException:
            await store.close()
            self._store = None
            raise
        self._server = server
        log.info("features service listening on %s (redis %s)", server.address, settings.redis_url)

    async def stop(self) -> None:
        server, self._server = self._server, None
        store, self._store = self._store, None
        try:
            if server is not None:
                await server.stop()
        finally:
            if store is not None:
                await store.close()
        log.info("features service stopped")


def main() -> None:
    settings = FeaturesSettings()
    configure_logging(settings.log_level)
    asyncio.run(serve_until_signal(FeaturesApp(settings)))


if __name__ == "__main__":
    main()
