"""Prometheus metrics of the inference orchestrator's micro-batchers and model pools.

`BatchMetrics` are the hooks for a micro-batcher (batch size distribution, queue depth,
queue wait); the app creates them on its server's registry (so one `/metrics` serves
them with the RPC metrics). prometheus_client objects are thread-safe.

`PoolMetrics` (backends/pool.py), labelled by the pooled backend (`onnxruntime_local`,
`ort_worker`, `triton`): `predmesh_model_pool_loaded_bytes` / `_loaded_models` (what the
pool holds now, versions being loaded or evicted included), `_loads_total`,
`_evictions_total`, `_load_seconds` (inner backend load; room making excluded) and
`_waited_requests_total` (requests that found their version cold and waited for a load).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from predmesh.common.metrics import LATENCY_BUCKETS

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
LOAD_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class BatchMetrics:
    """Hooks for a micro-batcher, labelled by model and version.

    - `batch_size.labels(model, version).observe(n)` once per executed batch;
    - `queue_depth.labels(model, version).set(q)` whenever the queue changes (or `inc`/`dec`);
    - `queue_wait.labels(model, version).observe(seconds)` per request when its batch starts.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.batch_size = Histogram(
            "predmesh_inference_batch_size",
            "Rows per executed micro-batch.",
            ["model", "version"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "predmesh_inference_queue_depth",
            "Requests waiting in the batcher queue.",
            ["model", "version"],
            registry=registry,
        )
        self.queue_wait = Histogram(
            "predmesh_inference_queue_wait_seconds",
            "Time a request waited in the batcher queue, seconds.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


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
