"""Producing `FeatureEvent`s to the ingestion topic (`feature-events`), for tools, tests and producers.

`feature_event(...)` builds one message (values: float/int/bool/str by feature name);
`record_key(event)` is its Kafka key (`entity_type:entity_id`: one entity's events stay in
one partition, in order). `FeatureEventProducer` wraps one confluent-kafka producer
(acks=all, idempotent): `send()` queues without waiting, `flush()` waits for delivery and
raises `ProduceError` if any record failed. Not thread-safe: one producer per thread.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from predmesh.common.values import scalar_to_value
from predmesh.v1 import ingest_pb2

FEATURE_EVENTS_TOPIC = "feature-events"
FEATURE_EVENTS_DLQ_TOPIC = "feature-events-dlq"


class ProduceError(RuntimeError):
    """Records could not be delivered to the broker."""


def feature_event(
    entity_type: str,
    entity_id: str,
    values: Mapping[str, float | int | bool | str],
    event_time_ms: int | None = None,
    source: str = "",
) -> ingest_pb2.FeatureEvent:
    """A FeatureEvent; `event_time_ms` defaults to now (Unix ms)."""
    event = ingest_pb2.FeatureEvent(entity_type=entity_type, entity_id=entity_id, source=source)
    event.event_time.FromMilliseconds(int(time.time() * 1000) if event_time_ms is None else event_time_ms)
    for name, value in values.items():
        event.values[name].CopyFrom(scalar_to_value(value))
    return event


def record_key(event: ingest_pb2.FeatureEvent) -> bytes:
    return f"{event.entity_type}:{event.entity_id}".encode()


class FeatureEventProducer:
    def __init__(self, bootstrap_servers: str, topic: str = FEATURE_EVENTS_TOPIC, **extra: Any) -> None:
        self._topic = topic
        self._failures: list[KafkaError] = []
        self._producer = Producer(
            {"bootstrap.servers": bootstrap_servers, "acks": "all", "enable.idempotence": True, "linger.ms": 5, **extra}
        )

    def _delivered(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._failures.append(err)

    def send(self, event: ingest_pb2.FeatureEvent | bytes, key: bytes | None = None) -> None:
        """Queue one event (or raw bytes, e.g. to test the dead-letter path); never waits for delivery."""
        if isinstance(event, ingest_pb2.FeatureEvent):
            key = key if key is not None else record_key(event)
            value = event.SerializeToString()
        else:
            value = event
        while True:
            try:
                self._producer.produce(self._topic, value=value, key=key, on_delivery=self._delivered)
                break
            except BufferError:  # local queue full: serve delivery reports, then retry
                self._producer.poll(0.05)
        self._producer.poll(0)

    def flush(self, timeout_s: float = 30.0) -> None:
        remaining = self._producer.flush(timeout_s)
        failures, self._failures = self._failures, []
        if remaining or failures:
            raise ProduceError(f"{remaining} records undelivered, {len(failures)} failed: {failures[:3]}")
