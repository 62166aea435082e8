"""Helpers shared by the logger tests (events, settings, a counting consumer)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from predmesh.local.kafka import DEV_CONSUMER_CONFIG, create_topics
from predmesh.v1.common_pb2 import Prediction
from predmesh.v1.events_pb2 import PredictionEvent
from services.logger.app import LoggerApp
from services.logger.settings import LoggerSettings

# `async with run_logger(bootstrap, topics, **settings) as app:` (fixture in conftest.py)
RunLogger = Callable[..., AbstractAsyncContextManager[LoggerApp]]


@dataclass
class Topics:
    predictions: str
    shadow: str

    @property
    def both(self) -> list[str]:
        return [self.predictions, self.shadow]


def make_event(i: int, arm: str = "stable", prefix: str = "req") -> PredictionEvent:
    return PredictionEvent(
        request_id=f"{prefix}-{i}",
        model="fraud",
        model_version="3",
        arm=arm,
        entity_id=f"user-{i % 97}",
        features_hash="ab" * 32,
        prediction=Prediction(score=(i % 100) / 100, label="ok"),
        latency_ms=1.5,
        trace_id=f"{i:032x}",
    )


def logger_settings(journal_dir: Path, bootstrap: str, topics: Topics, **overrides: Any) -> LoggerSettings:
    values: dict[str, Any] = {
        "port": 0,
        "bootstrap_servers": bootstrap,
        "topic": topics.predictions,
        "shadow_topic": topics.shadow,
        "journal_dir": journal_dir,
        "delivery_timeout_ms": 3000,
        "retry_backoff_max_s": 0.5,
        "grace_s": 1.0,
        "flush_timeout_s": 3.0,
        "segment_bytes": 256 * 1024,
    }
    values.update(overrides)
    return LoggerSettings(**values)


def consume(
    bootstrap: str, topics: list[str], expected: int, timeout_s: float = 30.0, settle_s: float = 0.5
) -> list[Any]:
    """Read every partition of `topics` from the beginning until `expected` messages arrived
    (then `settle_s` more to catch extras) or `timeout_s` passed. Counts messages (never
    watermarks); assigns partitions directly, so no consumer-group join is needed."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        {
            **DEV_CONSUMER_CONFIG,
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    metadata = consumer.list_topics(timeout=10)
    assignment = [
        TopicPartition(t, p, 0) for t in topics if t in metadata.topics for p in metadata.topics[t].partitions
    ]
    consumer.assign(assignment)
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline:
            if settle_until is None and len(out) >= expected:
                settle_until = time.monotonic() + settle_s
            if settle_until is not None and time.monotonic() >= settle_until:
                break
            for msg in consumer.consume(1000, timeout=0.1):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF or err.retriable():
                        continue
                    raise RuntimeError(f"consumer error: {err}")
                out.append(msg)
    finally:
        consumer.close()
    return out


def request_ids(messages: list[Any]) -> list[str]:
    return [PredictionEvent.FromString(m.value()).request_id for m in messages]


def ensure_topics(bootstrap: str, topics: Topics, partitions: int = 2) -> None:
    create_topics(bootstrap, topics.both, partitions=partitions)


async def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)
