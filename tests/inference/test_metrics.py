"""Batcher metrics of the inference service, and the latency buckets every service shares."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from predmesh.common.metrics import LATENCY_BUCKETS
from services.gateway.metrics import GatewayMetrics
from services.inference.metrics import BatchMetrics


def test_batch_metrics_hooks() -> None:
    registry = CollectorRegistry()
    m = BatchMetrics(registry)
    m.batch_size.labels("fraud", "2").observe(16)
    m.queue_depth.labels("fraud", "2").set(5)
    m.queue_wait.labels("fraud", "2").observe(0.001)
    mv = {"model": "fraud", "version": "2"}
    assert registry.get_sample_value("predmesh_inference_batch_size_sum", mv) == 16
    assert registry.get_sample_value("predmesh_inference_queue_depth", mv) == 5
    assert registry.get_sample_value("predmesh_inference_queue_wait_seconds_count", mv) == 1


def test_every_latency_histogram_uses_the_shared_buckets() -> None:
    """One set of latency buckets: the gateway's histogram had its own (no 0.5 ms, no 5 s)."""
    gateway = GatewayMetrics()
    gateway.latency.labels("fraud", "Predict").observe(0.0003)
    buckets = {
        float(s.labels["le"])
        for m in gateway.registry.collect()
        if m.name == "predmesh_gateway_request_latency_seconds"
        for s in m.samples
        if s.name.endswith("_bucket") and s.labels["le"] != "+Inf"
    }
    assert buckets == set(LATENCY_BUCKETS)
    batch = CollectorRegistry()
    BatchMetrics(batch).queue_wait.labels("m", "1").observe(0.001)
    wait_buckets = {
        float(s.labels["le"])
        for m in batch.collect()
        if m.name == "predmesh_inference_queue_wait_seconds"
        for s in m.samples
        if s.name.endswith("_bucket") and s.labels["le"] != "+Inf"
    }
    assert wait_buckets == set(LATENCY_BUCKETS)
