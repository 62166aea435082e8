"""Throughput and CPU cost of the analytics sink (not a test; run by hand, bounded, loopback only).

    python -m bench.sink                 # 100,000 events, batches of 5,000
    python -m bench.sink --events 20000 --kafka

Two measurements, each into a fresh embedded ClickHouse (chdb) under a temporary directory:

1. store path: the sink's per-event work without Kafka: decode the PredictionEvent bytes, build
   the row (services.sink.core.rows) and insert in batches (ChdbStore.insert, JSONEachRow);
   reported as events/s (wall) and CPU µs per event (process CPU time: what the sink adds per
   prediction logged). 10 % of the events are outcomes, 10 % shadow predictions.
2. with `--kafka`: end to end from a real tansu broker: the events are produced first, then the
   sink's LogConsumer (one consumer thread, batched inserts, commits) drains the three topics;
   reported as events/s from the consumer's start until every row is inserted.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from predmesh.v1 import common_pb2, events_pb2, outcomes_pb2


def make_events(n: int, seed: int = 1) -> list[tuple[str, bytes]]:
    """(topic, serialized PredictionEvent): 80 % predictions, 10 % shadow, 10 % outcomes."""
    rng = random.Random(seed)
    ts = Timestamp()
    ts.FromNanoseconds(time.time_ns())
    out: list[tuple[str, bytes]] = []
    for i in range(n):
        kind = i % 10
        rid = f"{uuid.UUID(int=rng.getrandbits(128)).hex}"
        if kind == 9:
            event = events_pb2.PredictionEvent(
                request_id=rid,
                model="fraud",
                arm="outcome",
                timestamp=ts,
                outcome=outcomes_pb2.Outcome(value=float(rng.random() < 0.1), event_time=ts),
            )
            out.append(("outcomes", event.SerializeToString()))
            continue
        score = rng.random()
        event = events_pb2.PredictionEvent(
            request_id=rid,
            model="fraud",
            model_version="2" if kind == 8 else "1",
            arm="shadow" if kind == 8 else ("canary" if kind == 7 else "stable"),
            entity_id=f"u{rng.randrange(100_000):05d}",
            features_hash="ab" * 32,
            prediction=common_pb2.Prediction(
                score=score, scores=[1 - score, score], label="fraud" if score > 0.5 else "legit"
            ),
            latency_ms=rng.uniform(1, 10),
            trace_id="cd" * 16,
            timestamp=ts,
        )
        out.append(("shadow-predictions" if kind == 8 else "predictions", event.SerializeToString()))
    return out


def bench_store(events: list[tuple[str, bytes]], batch: int) -> tuple[float, float]:
    from services.sink.backends.chdb_store import ChdbStore
    from services.sink.core.rows import event_row
    from services.sink.core.schema import create_statements
    from services.sink.transport.consumer import COLUMNS

    with tempfile.TemporaryDirectory() as tmp:
        store = ChdbStore(Path(tmp), "predmesh")
        for statement in create_statements("predmesh"):
            store.command(statement)
        wall, cpu = time.perf_counter(), time.process_time()
        for start in range(0, len(events), batch):
            tables: dict[str, list[tuple[object, ...]]] = {}
            for _, payload in events[start : start + batch]:
                row = event_row(events_pb2.PredictionEvent.FromString(payload))
                if row is not None:
                    tables.setdefault(row.table, []).append(row.values)
            for table, rows in tables.items():
                store.insert(table, COLUMNS[table], rows)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        total = store.query(
            "SELECT (SELECT count() FROM predmesh.predictions) + "
            "(SELECT count() FROM predmesh.shadow_predictions) + (SELECT count() FROM predmesh.outcomes)"
        )
        assert int(total.rows[0][0]) == len(events), total
        store.close()
    return len(events) / wall, cpu / len(events) * 1e6


def bench_kafka(events: list[tuple[str, bytes]], batch: int) -> float:
    from predmesh.local.kafka import TansuBroker

    with tempfile.TemporaryDirectory() as tmp:
        broker = TansuBroker(workdir=Path(tmp, "tansu"))
        broker.start()
        try:
            return _drain(str(broker.bootstrap_servers), events, batch, Path(tmp))  # type: ignore[attr-defined]
        finally:
            broker.stop()


def _drain(bootstrap: str, events: list[tuple[str, bytes]], batch: int, tmp: Path) -> float:
    from confluent_kafka import Producer

    from predmesh.common.kafka import consumer_config
    from predmesh.local.kafka import DEV_CONSUMER_TIMEOUTS, create_topics
    from services.sink.backends.chdb_store import ChdbStore
    from services.sink.core.schema import create_statements
    from services.sink.transport.consumer import LogConsumer

    create_topics(bootstrap, ["predictions", "shadow-predictions", "outcomes"])
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for topic, payload in events:
        while True:
            try:
                producer.produce(topic, payload)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)
    store = ChdbStore(tmp / "chdb", "predmesh")
    for statement in create_statements("predmesh"):
        store.command(statement)
    config = consumer_config(bootstrap, "bench-sink", from_beginning=True, overrides=DEV_CONSUMER_TIMEOUTS)
    consumer = LogConsumer(config, ["predictions", "shadow-predictions", "outcomes"], store, batch, 0.2)
    wall = time.perf_counter()
    consumer.start()
    deadline = time.monotonic() + 300
    while consumer.stats.inserted < len(events) and time.monotonic() < deadline:
        time.sleep(0.05)
    wall = time.perf_counter() - wall
    consumer.stop()
    store.close()
    assert consumer.stats.inserted == len(events), consumer.stats
    return len(events) / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--kafka", action="store_true", help="also measure the Kafka -> sink path (tansu)")
    args = parser.parse_args()
    events = make_events(args.events)
    rate, cpu_us = bench_store(events, args.batch)
    print(
        f"store path: {args.events} events in batches of {args.batch}: {rate:,.0f} events/s, {cpu_us:.1f} µs CPU/event"
    )
    if args.kafka:
        print(f"kafka -> sink -> store: {bench_kafka(events, args.batch):,.0f} events/s")


if __name__ == "__main__":
    main()
