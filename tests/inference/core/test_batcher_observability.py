"""MicroBatcher observability: Prometheus batch metrics and the linked batch span per micro-batch."""

from __future__ import annotations

import asyncio

import numpy as np
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from predmesh.common.deadline import Deadline
from services.inference.core.batcher import BatcherConfig, MicroBatcher
from services.inference.metrics import BatchMetrics
from tests.common.tracing_support import memory_exporter

LABELS = {"model": "fraud", "version": "3"}


async def test_metrics_count_batches_rows_and_queue_waits() -> None:
    registry = CollectorRegistry()
    release = asyncio.Event()

    async def run(batch: np.ndarray, deadline: Deadline | None) -> np.ndarray:
        await release.wait()
        return batch[:, :1]

    batcher = MicroBatcher(
        run,
        BatcherConfig(max_batch_rows=4, max_wait_s=0.001, max_inflight_batches=1),
        metrics=BatchMetrics(registry),
        labels=("fraud", "3"),
    )
    batcher.start()

    def sample(name: str) -> float:
        value = registry.get_sample_value(name, LABELS)
        return -1.0 if value is None else value

    try:
        calls = [asyncio.ensure_future(batcher.submit(np.full((1, 2), i, np.float32))) for i in range(10)]
        # One batch of 4 runs (held), so the rest wait in the queue or as the carried request.
        for _ in range(100):
            await asyncio.sleep(0.002)
            if sample("predmesh_inference_batch_size_count") == 1:
                break
        assert sample("predmesh_inference_batch_size_count") == 1
        assert 1 <= sample("predmesh_inference_queue_depth") <= 6  # queued behind the held batch
        release.set()
        outs = await asyncio.gather(*calls)
    finally:
        await batcher.stop()
    assert [float(o[0, 0]) for o in outs] == list(range(10))
    assert sample("predmesh_inference_batch_size_sum") == 10  # rows, over every batch
    assert sample("predmesh_inference_batch_size_count") == batcher.stats().batches == 3  # 4 + 4 + 2
    assert sample("predmesh_inference_queue_wait_seconds_count") == 10  # one per request
    assert sample("predmesh_inference_queue_depth") == 0


async def test_each_batch_runs_in_one_span_linked_to_its_requests() -> None:
    spans = memory_exporter()
    tracer = trace.get_tracer("test")
    inside: list[trace.Span] = []

    async def run(batch: np.ndarray, deadline: Deadline | None) -> np.ndarray:
        inside.append(trace.get_current_span())  # the backend call sees the batch span as current
        return batch[:, :1]

    batcher = MicroBatcher(run, BatcherConfig(max_batch_rows=8, max_wait_s=0.005), labels=("fraud", "3"))
    batcher.start()

    async def request(i: int) -> trace.SpanContext:
        with tracer.start_as_current_span(f"request-{i}") as current:
            await batcher.submit(np.full((2, 2), i, np.float32))
            return current.get_span_context()

    try:
        requests = await asyncio.gather(*(request(i) for i in range(3)))
    finally:
        await batcher.stop()
    finished = spans.get_finished_spans()
    batches = [s for s in finished if s.name == "predmesh.inference/batch"]
    assert len(batches) == 1 == batcher.stats().batches
    batch = batches[0]
    assert batch.parent is None
    assert sorted(link.context.span_id for link in batch.links) == sorted(r.span_id for r in requests)
    assert batch.attributes is not None
    assert batch.attributes["predmesh.model"] == "fraud" and batch.attributes["batch.rows"] == 6
    assert inside[0].get_span_context().span_id == batch.context.span_id
    waits = [s for s in finished if s.name == "queue_wait"]
    assert sorted(w.parent.span_id for w in waits if w.parent) == sorted(r.span_id for r in requests)
