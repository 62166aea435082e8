"""Read prediction events back from the real broker (count messages; never trust tansu watermarks)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer

from predmesh.local.kafka import DEV_CONSUMER_CONFIG
from predmesh.v1 import events_pb2


def collect_events(
    bootstrap: str,
    topic: str,
    done: Callable[[list[events_pb2.PredictionEvent]], bool],
    timeout_s: float = 30.0,
) -> list[events_pb2.PredictionEvent]:
    """Consume `topic` from the beginning until `done(events)` or the timeout."""
    consumer = Consumer(
        {
            **DEV_CONSUMER_CONFIG,
            "bootstrap.servers": bootstrap,
            "group.id": f"e2e-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    events: list[events_pb2.PredictionEvent] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not done(events):
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            event = events_pb2.PredictionEvent()
            event.ParseFromString(msg.value())
            events.append(event)
    finally:
        consumer.close()
    return events
