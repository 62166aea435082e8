"""ONNX Runtime worker process: the model repository served over KServe v2 gRPC.

`OrtWorkerApp(settings)` scans the repository (optionally only `settings.models`;
ensembles are the orchestrator's), loads every version into an in-process ONNX Runtime backend (sessions run on its own
thread pool, never on the event loop) and serves tritonclient's
`GRPCInferenceService` plus gRPC health on one grpc.aio server. The orchestrator
reaches it through `backends/kserve_grpc.py`, exactly like Triton. The worker does not
batch: the orchestrator's micro-batcher sends it batches. It polls the repository
(`poll_interval_ms`) and hot-swaps versions like the orchestrator (core/lifecycle.py),
with a longer `drain_ms` so the orchestrator stops using a removed version first.

`python -m services.inference.workers.ort_worker` runs it until SIGTERM/SIGINT
(health NOT_SERVING, in-flight calls get `grace_s`, then sessions and pool are freed).
"""

from __future__ import annotations

import asyncio
import logging

from tritonclient.grpc import service_pb2, service_pb2_grpc

from predmesh.common.grpcserver import GrpcServer
from predmesh.common.runner import configure_logging, serve_until_signal
from services.inference.backends.onnxruntime_local import OnnxRuntimeLocalBackend
from services.inference.core.lifecycle import ModelLifecycle
from services.inference.core.registry import ModelRegistry, scan_repository
from services.inference.workers.kserve import KServeServicer
from services.inference.workers.settings import OrtWorkerSettings

log = logging.getLogger(__name__)

SERVICE_NAME = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name


class OrtWorkerApp:
    """The worker process: owns the registry, the ORT backend and the gRPC server."""

    def __init__(self, settings: OrtWorkerSettings | None = None) -> None:
        self.settings = settings or OrtWorkerSettings()
        self.lifecycle: ModelLifecycle | None = None
        self._backend: OnnxRuntimeLocalBackend | None = None
        self._server: GrpcServer | None = None

    @property
    def address(self) -> str:
        if self._server is None:
            raise RuntimeError("OrtWorkerApp is not started")
        return self._server.address

    async def start(self) -> None:
        settings = self.settings
        wanted = {name.strip() for name in settings.models.split(",") if name.strip()}
        repo = settings.model_repository

        def scan() -> ModelRegistry:
            # Ensembles run in the orchestrator (their members are served here).
            found = scan_repository(repo)
            return ModelRegistry(mv for mv in found if not mv.is_ensemble and (not wanted or mv.name in wanted))

        backend = OnnxRuntimeLocalBackend(
            intra_op_threads=settings.ort_intra_op_threads,
            inter_op_threads=settings.ort_inter_op_threads,
            executor_threads=settings.executor_threads,
        )
        lifecycle = ModelLifecycle(
            backend, scan, root=repo, drain_s=settings.drain_ms / 1000.0, warmup_runs=settings.warmup_runs
        )
        servicer = KServeServicer(lifecycle, backend, max_rows=settings.max_rows)
        try:
            await lifecycle.start()
            registry = lifecycle.snapshot.registry
            server = GrpcServer(settings)
            server.add_servicer(service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server, servicer, SERVICE_NAME)
            servicer.serving = True
            await server.start()
        except BaseException:
            await lifecycle.stop()
            await backend.close()
            raise
        lifecycle.start_polling(settings.poll_interval_ms / 1000.0)
        self.lifecycle, self._backend, self._server = lifecycle, backend, server
        log.info(
            "ort worker on %s serving %s", server.address, ", ".join(str(mv) for mv in registry.all()) or "no models"
        )

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
        if self.lifecycle is not None:
            await self.lifecycle.stop()
        if self._backend is not None:
            await self._backend.close()
        self._server = self._backend = self.lifecycle = None
        log.info("ort worker stopped")


def main() -> None:
    settings = OrtWorkerSettings()
    configure_logging(settings.log_level)
    asyncio.run(serve_until_signal(OrtWorkerApp(settings)))


if __name__ == "__main__":
    main()
