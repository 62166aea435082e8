"""Composition root of the inference orchestrator.

`InferenceApp(settings)` wires settings -> model registry -> backends -> core ->
servicer -> gRPC server.

- `await start()` scans the model repository, places every version on its backend
  (in-process ONNX Runtime, the ORT worker pool or Triton, micro-batched where
  configured; backends/select.py), loads and warms it up (predmesh/models/lifecycle.py), starts
  serving, then polls the repository every `poll_interval_ms` for hot swaps.
- `await stop()` flips health to NOT_SERVING, drains in-flight RPCs within `grace_s`,
  unloads the models and closes the backends (and their thread pools). A failed start
  closes what it opened (predmesh.common.app.ServiceApp).

`python -m services.inference.app` runs it until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

from prometheus_client import CollectorRegistry

from predmesh.common.app import ServiceApp, run_app
from predmesh.common.grpcserver import GrpcServer
from predmesh.models.lifecycle import ModelLifecycle
from predmesh.models.metrics import PoolMetrics
from predmesh.models.registry import ModelRegistry
from predmesh.v1 import inference_pb2, inference_pb2_grpc
from services.inference.backends.select import RoutingBackend, build_backends, pool_parts
from services.inference.core.service import InferenceCore
from services.inference.metrics import BatchMetrics
from services.inference.settings import InferenceSettings
from services.inference.transport.servicer import InferenceServicer

log = logging.getLogger(__name__)

SERVICE_NAME = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name


class InferenceApp(ServiceApp[InferenceSettings]):
    """The inference service process: owns the backends, the core and the gRPC server."""

    name = "inference service"

    def __init__(self, settings: InferenceSettings) -> None:
        super().__init__(settings)
        self.core: InferenceCore | None = None
        self._backend: RoutingBackend | None = None

    async def open(self, stack: AsyncExitStack) -> None:
        settings = self.settings
        repo = settings.model_repository
        registry = await asyncio.to_thread(ModelRegistry.from_directory, repo)
        metrics_registry = CollectorRegistry()
        pool = pool_parts(settings, PoolMetrics(metrics_registry))
        backend = build_backends(settings, registry.all(), BatchMetrics(metrics_registry), pool)
        stack.push_async_callback(self._forget)
        stack.push_async_callback(backend.close)
        self._backend = backend
        lifecycle = ModelLifecycle(
            backend,
            scan=lambda: ModelRegistry.from_directory(repo),
            root=repo,
            drain_s=settings.drain_ms / 1000.0,
            warmup_runs=settings.warmup_runs,
            warmup_rows=settings.warmup_rows,
            load_timeout_s=settings.backend_load_timeout_ms / 1000.0,
        )
        if pool is not None:
            pool.in_use = lifecycle.in_flight  # a leased version is never evicted
        stack.push_async_callback(lifecycle.stop)  # also stops the repository polling
        await lifecycle.start()
        core = InferenceCore(lifecycle, backend, max_rows=settings.max_rows, offload_rows=settings.offload_rows)
        self.core = core
        server = GrpcServer(settings, registry=metrics_registry)
        server.add_servicer(
            inference_pb2_grpc.add_InferenceServiceServicer_to_server,
            InferenceServicer(core),
            SERVICE_NAME,
        )
        await self.serve(stack, server)
        lifecycle.start_polling(settings.poll_interval_ms / 1000.0)
        log.info(
            "inference service on %s serving %s from %s",
            server.address,
            ", ".join(str(mv) for mv in core.registry.all()) or "no models",
            repo,
        )
        for mv in core.registry.all():
            where = "its members (ensemble)" if mv.is_ensemble else backend.backend_for(mv).name
            log.info("model %s runs on %s", mv, where)

    async def _forget(self) -> None:
        self.core = self._backend = None

    @property
    def backend(self) -> RoutingBackend:
        """The routing backend (e.g. for `batch_stats`); only while started."""
        if self._backend is None:
            raise RuntimeError("InferenceApp is not started")
        return self._backend


def main() -> None:
    run_app(InferenceSettings, InferenceApp)


if __name__ == "__main__":
    main()
