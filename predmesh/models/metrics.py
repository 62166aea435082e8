"""Prometheus metrics of the model pools (`predmesh.models.pool`).

`PoolMetrics`, labelled by the pooled backend (`onnxruntime_local`, `ort_worker`, `triton`):
`predmesh_model_pool_loaded_bytes` / `_loaded_models` (what the pool holds now, versions being
loaded or evicted included), `_loads_total`, `_evictions_total`, `_load_seconds` (inner backend
load; room making excluded) and `_waited_requests_total` (requests that found their version cold
and waited for a load). The process creates them on its server's registry; prometheus_client
objects are thread-safe.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LOAD_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class PoolMetrics:
    """Metric families shared by every pool of one process (one label per backend)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.loaded_bytes = Gauge(
            "predmesh_model_pool_loaded_bytes",
            "Bytes of model versions the pool holds.",
            ["backend"],
            registry=registry,
        )
        self.loaded_models = Gauge(
            "predmesh_model_pool_loaded_models", "Model versions the pool holds.", ["backend"], registry=registry
        )
        self.loads = Counter("predmesh_model_pool_loads", "Model versions loaded.", ["backend"], registry=registry)
        self.evictions = Counter(
            "predmesh_model_pool_evictions",
            "Model versions evicted (least recently used).",
            ["backend"],
            registry=registry,
        )
        self.load_seconds = Histogram(
            "predmesh_model_pool_load_seconds",
            "Time to load one model version on its backend, seconds.",
            ["backend"],
            buckets=LOAD_BUCKETS,
            registry=registry,
        )
        self.waited = Counter(
            "predmesh_model_pool_waited_requests",
            "Requests that found their model version cold and waited for its load.",
            ["backend"],
            registry=registry,
        )
