"""`predmesh features push` on the real broker: command-line values and a JSON-lines file become FeatureEvents."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from predmesh.cli import main
from predmesh.local.kafka import DEV_CONSUMER_CONFIG, TansuBroker, create_topics
from predmesh.v1 import ingest_pb2


def _read(bootstrap: str, topic: str, expected: int) -> list[tuple[bytes, ingest_pb2.FeatureEvent]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"push-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            **DEV_CONSUMER_CONFIG,
        }
    )
    consumer.subscribe([topic])
    out: list[tuple[bytes, ingest_pb2.FeatureEvent]] = []
    try:
        deadline = time.monotonic() + 20
        while len(out) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(10, 0.2):
                if msg.error() is None:
                    out.append((msg.key() or b"", ingest_pb2.FeatureEvent.FromString(msg.value() or b"")))
    finally:
        consumer.close()
    return out


async def test_push_from_the_command_line_and_a_file(tansu: TansuBroker, tmp_path: Path) -> None:
    topic = f"feature-events-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(create_topics, tansu.bootstrap_servers, [topic])
    common = ["features", "push", "--bootstrap-servers", tansu.bootstrap_servers, "--topic", topic]
    argv = [*common, "--entity-id", "u1", "--event-time-ms", "1700000000000", "txn_count_7d=3", "country=FR"]
    assert await asyncio.to_thread(main, argv) == 0
    events = tmp_path / "events.jsonl"
    events.write_text(
        json.dumps({"entity_type": "merchant", "entity_id": "m1", "values": {"risk": 0.5, "open": True}}) + "\n\n"
    )
    assert await asyncio.to_thread(main, [*common, "--file", str(events)]) == 0
    (key1, first), (key2, second) = await asyncio.to_thread(_read, tansu.bootstrap_servers, topic, 2)
    assert key1 == b"user:u1" and first.entity_type == "user" and first.entity_id == "u1"
    assert first.event_time.ToMilliseconds() == 1_700_000_000_000
    assert first.values["txn_count_7d"].number_value == 3.0 and first.values["country"].string_value == "FR"
    assert key2 == b"merchant:m1" and second.values["open"].bool_value is True
    assert abs(second.event_time.ToMilliseconds() - time.time() * 1000) < 600_000  # defaulted to now


def test_push_refuses_bad_usage(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="either --file or --entity-id"):
        main(["features", "push", "--bootstrap-servers", "127.0.0.1:1", "a=1"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"entity_type": "user"}\n')
    with pytest.raises(SystemExit, match=r"bad\.jsonl:1: not a feature event"):
        main(["features", "push", "--bootstrap-servers", "127.0.0.1:1", "--file", str(bad)])
