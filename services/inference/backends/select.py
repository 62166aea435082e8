"""Backend selection: which execution backend runs each model version.

Placement rule (per model version, from its spec and the settings):

1. `spec.backend` (local | ort_worker | triton) when that backend is configured;
2. else `spec.device == "gpu"` -> triton when `triton_target` is set;
3. else the CPU default `settings.cpu_backend` (auto: ort_worker when `ort_workers` is
   set, else local);
4. anything named but not configured falls back to in-process ONNX Runtime (local),
   with a warning, so a dev machine without Triton still serves every model.

Model pools: with `pool_max_bytes` or `pool_max_models` set, every backend kind gets its
own `PooledBackend` (predmesh/models/pool.py) outermost (pool -> batcher -> backend): eager
versions (predmesh/models/eager.py: the routing table's arms) load at start, the rest on first use
under the budget. Remote backends then run under version control (the server loads only
what the pool loaded; backends/kserve_grpc.py).

Batching: ORT workers get the orchestrator's micro-batcher (`batch_ort_workers`);
Triton gets it only when `triton_batches` is false (Triton's dynamic_batching does it
otherwise: no double batching); local only with `batch_local`.

`RoutingBackend` is itself a `Backend`: it forwards each call to the backend chosen
for that version and owns (closes) every backend it was given or created. Built with
settings, it places a version it has not seen on its first `load` (hot reload) and
creates that backend kind when none exists yet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

import numpy as np

from predmesh.common.deadline import Deadline
from predmesh.common.grpcclient import client_tls
from predmesh.models.backend import Backend
from predmesh.models.eager import EagerPolicy
from predmesh.models.errors import ModelNotReady
from predmesh.models.metrics import PoolMetrics
from predmesh.models.onnxruntime_local import OnnxRuntimeLocalBackend
from predmesh.models.pool import PoolConfig, PooledBackend
from predmesh.models.registry import ModelVersion, VersionKey
from services.inference.backends.batching import BatchingBackend
from services.inference.backends.kserve_grpc import KServeGrpcBackend
from services.inference.core.batcher import BatcherConfig, BatcherStats
from services.inference.core.placement import HashRing, version_key
from services.inference.metrics import BatchMetrics
from services.inference.settings import InferenceSettings
from services.inference.triton.layout import read_model_config

log = logging.getLogger(__name__)

LOCAL, ORT_WORKER, TRITON = "local", "ort_worker", "triton"


def placement(mv: ModelVersion, settings: InferenceSettings) -> str:
    """The backend kind (local | ort_worker | triton) that serves `mv` under `settings`."""
    configured = {
        LOCAL,
        *([ORT_WORKER] if settings.ort_worker_targets else []),
        *([TRITON] if settings.triton_target else []),
    }
    spec = mv.spec
    wanted: str
    if spec.backend is not None:
        wanted = spec.backend
    elif spec.device == "gpu" and TRITON in configured:
        wanted = TRITON
    elif settings.cpu_backend == "auto":
        wanted = ORT_WORKER if ORT_WORKER in configured else LOCAL
    else:
        wanted = settings.cpu_backend
    if wanted not in configured:
        log.warning("model %s wants backend %s, which is not configured: running it in-process", mv, wanted)
        return LOCAL
    return wanted


def batcher_config(settings: InferenceSettings) -> BatcherConfig:
    return BatcherConfig(
        max_batch_rows=settings.batch_max_rows,
        max_wait_s=settings.batch_max_wait_ms / 1000.0,
        max_queue=settings.batch_max_queue,
        max_inflight_batches=settings.batch_max_inflight,
    )


@dataclass
class PoolParts:
    """What every model pool of one orchestrator shares (only with a bounded pool)."""

    eager: EagerPolicy
    metrics: PoolMetrics | None = None
    in_use: Callable[[ModelVersion], int] | None = None  # the lifecycle's leases, set once it exists
    pools: list[PooledBackend] | None = None

    def wrap(self, inner: Backend, settings: InferenceSettings) -> PooledBackend:
        config = PoolConfig(
            max_bytes=settings.pool_max_bytes,
            max_models=settings.pool_max_models,
            load_timeout_s=settings.pool_load_timeout_ms / 1000.0,
        )
        pool = PooledBackend(inner, config, self.eager.is_eager, metrics=self.metrics, in_use=self._in_use)
        if self.pools is None:
            self.pools = []
        self.pools.append(pool)
        return pool

    def _in_use(self, mv: ModelVersion) -> int:
        return self.in_use(mv) if self.in_use is not None else 0


def pool_parts(settings: InferenceSettings, metrics: PoolMetrics | None = None) -> PoolParts | None:
    if not settings.pool_bounded:
        return None
    extra = [item for item in settings.pool_eager.split(",") if item.strip()]
    return PoolParts(EagerPolicy(settings.routing_path, extra), metrics)


def make_backend(
    kind: str, settings: InferenceSettings, metrics: BatchMetrics | None = None, pool: PoolParts | None = None
) -> Backend:
    """A new backend of `kind`, wrapped in a micro-batcher per the settings (observed by `metrics`),
    and in a model pool when the settings bound one."""
    backend = _make_backend(kind, settings, metrics, pool is not None, pool.eager if pool is not None else None)
    return pool.wrap(backend, settings) if pool is not None else backend


def worker_owners(settings: InferenceSettings, eager: EagerPolicy) -> Callable[[str, str], list[str]]:
    """owners(model, version): every worker for eager versions, the consistent-hash owner(s) for cold ones."""
    targets = settings.ort_worker_targets
    ring = HashRing(targets)

    def owners(name: str, version: str) -> list[str]:
        if (name, version) in eager.cached:
            return targets
        return ring.owners(version_key(name, version), settings.worker_placement_copies)

    return owners


def _make_backend(
    kind: str,
    settings: InferenceSettings,
    metrics: BatchMetrics | None,
    version_control: bool,
    eager: EagerPolicy | None = None,
) -> Backend:
    if kind == LOCAL:
        local: Backend = OnnxRuntimeLocalBackend(
            intra_op_threads=settings.ort_intra_op_threads,
            inter_op_threads=settings.ort_inter_op_threads,
            executor_threads=settings.executor_threads,
        )
        return BatchingBackend(local, batcher_config(settings), metrics) if settings.batch_local else local
    if kind == ORT_WORKER:
        workers: Backend = KServeGrpcBackend(
            settings.ort_worker_targets,
            name=ORT_WORKER,
            timeout_s=settings.backend_timeout_ms / 1000.0,
            load_timeout_s=settings.backend_load_timeout_ms / 1000.0,
            balance=settings.worker_balance,
            version_control=version_control,
            owners=worker_owners(settings, eager)
            if eager is not None and settings.worker_placement == "hash"
            else None,
            tls=client_tls(settings),
            tls_poll_s=settings.tls_poll_s,
        )
        return BatchingBackend(workers, batcher_config(settings), metrics) if settings.batch_ort_workers else workers
    if kind == TRITON:
        assert settings.triton_target is not None
        triton: Backend = KServeGrpcBackend(
            [settings.triton_target],
            name=TRITON,
            timeout_s=settings.backend_timeout_ms / 1000.0,
            load_timeout_s=settings.backend_load_timeout_ms / 1000.0,
            model_control=settings.triton_model_control,
            version_control=version_control,
            model_config=partial(read_model_config, settings.model_repository, config_name=settings.triton_config_name),
            tls=client_tls(settings) if settings.triton_tls else None,
            admin_key=settings.triton_admin_key.get_secret_value(),
            tls_poll_s=settings.tls_poll_s,
        )
        return triton if settings.triton_batches else BatchingBackend(triton, batcher_config(settings), metrics)
    raise ValueError(f"unknown backend kind {kind!r}")


def build_backends(
    settings: InferenceSettings,
    versions: Iterable[ModelVersion],
    metrics: BatchMetrics | None = None,
    pool: PoolParts | None = None,
) -> RoutingBackend:
    """Create only the backends some version is placed on (ensembles run no backend of
    their own); later versions are placed on their first load."""
    routes = {mv.key: placement(mv, settings) for mv in versions if not mv.is_ensemble}
    backends = {kind: make_backend(kind, settings, metrics, pool) for kind in sorted(set(routes.values()))}
    return RoutingBackend(backends, routes, settings, metrics, pool)


class RoutingBackend:
    """Forwards each model version to its backend; owns and closes all of them."""

    name = "routing"

    def __init__(
        self,
        backends: dict[str, Backend],
        routes: dict[VersionKey, str],
        settings: InferenceSettings | None = None,
        metrics: BatchMetrics | None = None,
        pool: PoolParts | None = None,
    ) -> None:
        self.backends = backends
        self.routes = dict(routes)
        self._settings = settings
        self._metrics = metrics
        self.pool = pool

    def backend_for(self, mv: ModelVersion) -> Backend:
        try:
            return self.backends[self.routes[mv.key]]
        except KeyError:
            raise ModelNotReady(f"model {mv} has no backend") from None

    async def load(self, model_version: ModelVersion) -> None:
        if model_version.key not in self.routes and self._settings is not None:
            kind = placement(model_version, self._settings)
            if kind not in self.backends:
                self.backends[kind] = make_backend(kind, self._settings, self._metrics, self.pool)
            self.routes[model_version.key] = kind
        await self.backend_for(model_version).load(model_version)

    async def infer(
        self, model_version: ModelVersion, batch: np.ndarray, deadline: Deadline | None = None
    ) -> np.ndarray:
        return await self.backend_for(model_version).infer(model_version, batch, deadline)

    async def unload(self, model_version: ModelVersion) -> None:
        if model_version.key in self.routes:
            await self.backend_for(model_version).unload(model_version)
            if self._settings is not None:
                del self.routes[model_version.key]

    async def ready(self, model_version: ModelVersion) -> bool:
        return await self.backend_for(model_version).ready(model_version)

    def batch_stats(self, model_version: ModelVersion) -> BatcherStats | None:
        """Micro-batcher counters for `mv`, or None when its backend does not batch."""
        backend = self.backend_for(model_version)
        if isinstance(backend, PooledBackend):
            backend = backend.inner
        return backend.stats(model_version) if isinstance(backend, BatchingBackend) else None

    async def close(self) -> None:
        for backend in self.backends.values():
            try:
                await backend.close()
            except Exception:  # keep closing the rest
                log.exception("closing backend %s failed", backend.name)
