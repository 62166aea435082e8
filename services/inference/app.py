"""Composition root of the inference orchestrator.

`InferenceApp(settings)` wires settings -> model registry -> backends -> core ->
servicer -> gRPC server.

- `await start()` scans the model repository, places every version on its backend
  (in-process ONNX Runtime, the ORT worker pool or Triton, micro-batched where
  configured; backends/select.py), loads and warms it up (core/lifecycle.py), starts
  serving, then polls the repository every `poll_interval_ms` for hot swaps.
- `await stop()` flips health to NOT_SERVING, drains in-flight RPCs within `grace_s`,
  unloads the models and closes the backends (and their thread pools).

`python -m services.inference.app` runs it until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CollectorRegistry

from predmesh.common.grpcserver import GrpcServer
from predmesh.common.runner import configure_logging, serve_until_signal
from predmesh.v1 import inference_pb2, inference_pb2_grpc
from services.inference.backends.select import RoutingBackend, build_backends
from services.inference.core.lifecycle import ModelLifecycle
from services.inference.core.registry import ModelRegistry
from services.inference.core.service import InferenceCore
from services.inference.metrics import BatchMetrics
from services.inference.settings import InferenceSettings
from services.inference.transport.servicer import InferenceServicer

log = logging.getLogger(__name__)

SERVICE_NAME = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name


class InferenceApp:
    """The inference service process: owns the backend, the core and the gRPC server."""

    def __init__(self, settings: InferenceSettings | None = None) -> None:
        self.settings = settings or InferenceSettings()
        self.core: InferenceCore | None = None
        self._backend: RoutingBackend | None = None
        self._server: GrpcServer | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("InferenceApp is not started")
        return self._server.port

    @property
    def address(self) -> str:
        if self._server is None:
            raise RuntimeError("InferenceApp is not started")
        return self._server.address

    async def start(self) -> None:
        settings = self.settings
        repo = settings.model_repository
        registry = await asyncio.to_thread(ModelRegistry.from_directory, repo)
        metrics_registry = CollectorRegistry()
        backend = build_backends(settings, registry.all(), BatchMetrics(metrics_registry))
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
        core = InferenceCore(lifecycle, backend, max_rows=settings.max_rows, offload_rows=settings.offload_rows)
        try:
            await lifecycle.start()
            server = GrpcServer(settings, registry=metrics_registry)
            server.add_servicer(
                inference_pb2_grpc.add_InferenceServiceServicer_to_server,
                InferenceServicer(core),
                SERVICE_NAME,
            )
            await server.start()
        except BaseException:
            await lifecycle.stop()
            await backend.close()
            self._backend = None
            raise
        lifecycle.start_polling(settings.poll_interval_ms / 1000.0)
        self.core, self._server = core, server
        log.info(
            "inference service on %s serving %s from %s",
            server.address,
            ", ".join(str(mv) for mv in core.registry.all()) or "no models",
            repo,
        )
        for mv in core.registry.all():
            where = "its members (ensemble)" if mv.is_ensemble else backend.backend_for(mv).name
            log.info("model %s runs on %s", mv, where)

    @property
    def backend(self) -> RoutingBackend:
        """The routing backend (e.g. for `batch_stats`); only while started."""
        if self._backend is None:
            raise RuntimeError("InferenceApp is not started")
        return self._backend

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
        if self.core is not None:
            await self.core.lifecycle.stop()
        if self._backend is not None:
            await self._backend.close()
        self._server = self.core = self._backend = None
        log.info("inference service stopped")


def main() -> None:
    settings = InferenceSettings()
    configure_logging(settings.log_level)
    asyncio.run(serve_until_signal(InferenceApp(settings)))


if __name__ == "__main__":
    main()
