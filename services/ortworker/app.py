"""ONNX Runtime worker process: the model repository served over KServe v2 gRPC.

`OrtWorkerApp(settings)` scans the repository (optionally only `settings.models`;
ensembles are the orchestrator's), loads every version into an in-process ONNX Runtime backend (sessions run on its own
thread pool, never on the event loop) and serves tritonclient's
`GRPCInferenceService` plus gRPC health on one grpc.aio server. The orchestrator
reaches it through `backends/kserve_grpc.py`, exactly like Triton. The worker does not
batch: the orchestrator's micro-batcher sends it batches. It polls the repository
(`poll_interval_ms`) and hot-swaps versions like the orchestrator (predmesh/models/lifecycle.py),
with a longer `drain_ms` so the orchestrator stops using a removed version first.

With `pool_max_models`/`pool_max_bytes` it runs a worker-local model pool
(predmesh/models/pool.py): eager versions load at start, others on their
first ModelInfer, evicted LRU under the budget; ModelReady is true for every registered
version (it loads on demand). With `model_control=explicit` it loads nothing at start: the orchestrator's model pool
loads and unloads versions through RepositoryModelLoad/Unload (core/control.py), the
way it drives Triton in explicit mode.

`python -m services.ortworker.app` runs it until SIGTERM/SIGINT
(health NOT_SERVING, in-flight calls get `grace_s`, then sessions and pool are freed).
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry
from tritonclient.grpc import service_pb2, service_pb2_grpc

from predmesh.common.grpcserver import GrpcServer
from predmesh.common.runner import configure_logging, run_loop, serve_until_signal
from predmesh.models.backend import Backend
from predmesh.models.eager import EagerPolicy
from predmesh.models.lifecycle import ModelLifecycle
from predmesh.models.metrics import PoolMetrics
from predmesh.models.onnxruntime_local import OnnxRuntimeLocalBackend
from predmesh.models.pool import PoolConfig, PooledBackend
from predmesh.models.registry import ModelRegistry, scan_repository
from services.ortworker.core.control import ExplicitControl
from services.ortworker.settings import OrtWorkerSettings
from services.ortworker.transport.kserve import KServeServicer

log = logging.getLogger(__name__)

SERVICE_NAME = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name


class OrtWorkerApp:
    """The worker process: owns the registry, the ORT backend and the gRPC server."""

    def __init__(self, settings: OrtWorkerSettings | None = None) -> None:
        self.settings = settings or OrtWorkerSettings()
        self.lifecycle: ModelLifecycle | None = None
        self._backend: Backend | None = None
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

        backend: Backend = OnnxRuntimeLocalBackend(
            intra_op_threads=settings.ort_intra_op_threads,
            inter_op_threads=settings.ort_inter_op_threads,
            executor_threads=settings.executor_threads,
        )
        control: ExplicitControl | None = None
        pool: PooledBackend | None = None
        metrics_registry = CollectorRegistry()
        if settings.model_control == "explicit":
            if settings.pool_bounded:
                raise ValueError("PREDMESH_ORTWORKER_POOL_* and MODEL_CONTROL=explicit exclude each other")
            control = ExplicitControl(backend, lambda: lifecycle.snapshot.registry)
            backend = control
        elif settings.pool_bounded:
            extra = [item for item in settings.pool_eager.split(",") if item.strip()]
            config = PoolConfig(settings.pool_max_bytes, settings.pool_max_models, settings.pool_load_timeout_ms / 1000)
            pool = PooledBackend(
                backend,
                config,
                EagerPolicy(settings.routing_path, extra).is_eager,
                metrics=PoolMetrics(metrics_registry),
            )
            backend = pool
        lifecycle = ModelLifecycle(
            backend, scan, root=repo, drain_s=settings.drain_ms / 1000.0, warmup_runs=settings.warmup_runs
        )
        if pool is not None:
            pool.in_use = lifecycle.in_flight
        servicer = KServeServicer(lifecycle, backend, max_rows=settings.max_rows, control=control)
        try:
            await lifecycle.start()
            registry = lifecycle.snapshot.registry
            server = GrpcServer(settings, registry=metrics_registry)
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
    run_loop(serve_until_signal(OrtWorkerApp(settings)), settings.uvloop)


if __name__ == "__main__":
    main()
