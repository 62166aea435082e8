"""Prometheus metrics of the inference orchestrator's micro-batchers.

`BatchMetrics` are the hooks for a micro-batcher (batch size distribution, queue depth,
queue wait); the app creates them on its server's registry (so one `/metrics` serves
them with the RPC metrics). prometheus_client objects are thread-safe.

The model pools' metrics (`PoolMetrics`) live with the pool in `predmesh.models.metrics`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, Histogram

from predmesh.common.metrics import LATENCY_BUCKETS

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


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
