"""Streaming ingestion throughput and event-to-Redis lag on the real broker and Redis (not a test; run by hand).

    python -m bench.ingest [--backlog 50000] [--rate 2000] [--duration 10] [--entities 10000]

Starts redis-server and a tansu broker, then runs the ingestion loop (`IngestLoop` with the
demo registry's quality gates and the Lua newest-event-wins writer) in this process while a
producer PROCESS sends demo-user `FeatureEvent`s:

1. backlog: `--backlog` events are produced first, then the loop drains them; events/s over
   the drain (first record consumed -> last record written and committed), and the loop's CPU
   per event (this process's CPU time: the producer runs in its own process);
2. fixed rate: after one warm-up event (group joined), the producer sends `--rate` events/s for
   `--duration` s (paced every 10 ms, event time = intended send time) while the loop runs; the
   lag of every written event is measured exactly (now - event time, taken right after its
   Redis pipeline returned), p50/p99/max. Some events are `ignored_older` (two events of one
   entity within the same millisecond) and not in the lag sample.

Dev consumer timeouts (fetch.wait.max.ms=10) as in the local mesh. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import tempfile
import threading
import time
from pathlib import Path

import redis

from predmesh.common.kafka import consumer_config
from predmesh.demo import FEATURE_REGISTRY
from predmesh.featurestore.registry import load_registry
from predmesh.local.kafka import DEV_CONSUMER_TIMEOUTS, TansuBroker, create_topics
from predmesh.local.procs import RedisServer
from services.ingest.app import dlq_producer_config
from services.ingest.core.gates import Accepted, QualityGates
from services.ingest.core.writer import RedisWriter
from services.ingest.metrics import IngestMetrics
from services.ingest.settings import IngestSettings
from services.ingest.transport.consumer import IngestLoop

LINGER_MS = int(os.environ.get("BENCH_LINGER_MS", "5"))
COUNTRIES = ["US", "GB", "DE", "FR", "IN", "BR", "other"]


def _produce(bootstrap: str, topic: str, total: int, rate: float, entities: int, seed: int) -> None:
    """Producer process: `total` events at `rate`/s (0 = as fast as possible), event time = intended send time."""
    from predmesh.clients.featureevents import FeatureEventProducer, feature_event

    rng = random.Random(seed)
    producer = FeatureEventProducer(bootstrap, topic, **{"linger.ms": LINGER_MS, "batch.num.messages": 10000})
    start = time.time()
    tick_s = 0.01
    sent = 0
    lateness_ms: list[float] = []  # how late each paced send round started (the producer's own lag)
    while sent < total:
        if rate > 0:
            due = min(total, int((time.time() - start) * rate) + 1)
            if due <= sent:
                time.sleep(tick_s / 2)
                continue
        else:
            due = min(total, sent + 1000)
        if rate > 0:
            lateness_ms.append(time.time() * 1000 - (start + sent / rate) * 1000)
        for i in range(sent, due):
            intended_ms = int((start + i / rate) * 1000) if rate > 0 else int(time.time() * 1000)
            producer.send(
                feature_event(
                    "user",
                    f"u{rng.randrange(entities):05d}",
                    {
                        "txn_count_7d": rng.randrange(0, 50),
                        "avg_txn_amount_30d": round(rng.uniform(1, 500), 2),
                        "country": rng.choice(COUNTRIES),
                    },
                    intended_ms,
                )
            )
        sent = due
    producer.flush(60)
    if lateness_ms:
        p50, p99 = _percentile(lateness_ms, 0.5), _percentile(lateness_ms, 0.99)
        print(f"producer send lateness p50/p99: {p50:.1f} / {p99:.1f} ms", flush=True)


class _Recorder:
    def __init__(self) -> None:
        self.lags_ms: list[float] = []
        self.written = 0
        self.first_s = 0.0
        self.last_s = 0.0
        self._lock = threading.Lock()

    def __call__(self, batch: list[Accepted]) -> None:
        now = time.time()
        with self._lock:
            if not self.first_s:
                self.first_s = now
            self.last_s = now
            self.written += len(batch)
            self.lags_ms.extend(now * 1000 - e.event_time_ms for e in batch)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _run(
    bootstrap: str, redis_url: str, topic: str, expected: int, producer: multiprocessing.process.BaseProcess | None
):
    """Run the loop until `expected` events were processed; returns (recorder, metrics, cpu_s, wall_s)."""
    settings = IngestSettings(
        bootstrap_servers=bootstrap,
        topic=topic,
        dlq_topic=f"{topic}-dlq",
        group_id=f"bench-{topic}",
        registry_path=FEATURE_REGISTRY,
        redis_url=redis_url,
        kafka_extra=DEV_CONSUMER_TIMEOUTS,
    )
    metrics = IngestMetrics()
    recorder = _Recorder()
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    loop = IngestLoop(
        consumer_config(bootstrap, settings.group_id, from_beginning=True, overrides=settings.kafka_extra),
        dlq_producer_config(settings),
        topic,
        settings.dlq_topic,
        QualityGates(load_registry(FEATURE_REGISTRY)),
        RedisWriter(client),
        metrics,
        batch_max=settings.batch_max_events,
        on_written=recorder,
    )

    def processed() -> float:
        return sum(
            metrics.registry.get_sample_value("predmesh_ingest_events_total", {"outcome": o}) or 0.0
            for o in ("written", "ignored_older", "rejected")
        )

    loop.start()
    if producer is not None:
        # Warm up: one event through the loop, so the group is joined before the measured stream starts.
        from predmesh.clients.featureevents import FeatureEventProducer, feature_event

        warm = FeatureEventProducer(bootstrap, topic)
        warm.send(feature_event("user", "warmup", {"txn_count_7d": 1}))
        warm.flush(30)
        expected += 1
        while processed() < 1:
            time.sleep(0.02)
        recorder.__init__()  # type: ignore[misc]  # forget the warm-up
        producer.start()
    cpu0, wall0 = time.process_time(), time.monotonic()
    deadline = time.monotonic() + 300
    while processed() < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    loop.stop()
    client.close()
    if producer is not None:
        producer.join(30)
    return recorder, metrics, processed(), cpu, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest")
    parser.add_argument("--backlog", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--entities", type=int, default=10_000)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    redis_server = RedisServer(workdir=work / "redis")
    broker = TansuBroker(workdir=work / "tansu")
    rows: list[str] = []
    try:
        redis_server.start()
        broker.start()
        bootstrap = broker.bootstrap_servers

        # 1. backlog drain
        create_topics(bootstrap, ["backlog", "backlog-dlq"])
        _produce(bootstrap, "backlog", args.backlog, 0, args.entities, 1)
        rec, _m, done, cpu, _wall = _run(bootstrap, redis_server.url, "backlog", args.backlog, None)
        drain_s = max(1e-9, rec.last_s - rec.first_s)
        rows.append(
            f"| backlog drain | {args.backlog:,} | {done / drain_s:,.0f} events/s | - | - | "
            f"{cpu / max(1, done) * 1e6:,.0f} µs |"
        )

        # 2. fixed rate
        total = int(args.rate * args.duration)
        create_topics(bootstrap, ["steady", "steady-dlq"])
        producer = multiprocessing.get_context("spawn").Process(
            target=_produce, args=(bootstrap, "steady", total, args.rate, args.entities, 2)
        )
        rec, _m, done, cpu, _wall = _run(bootstrap, redis_server.url, "steady", total, producer)
        rows.append(
            f"| fixed rate {args.rate:,.0f}/s for {args.duration:.0f} s | {total:,} | "
            f"{rec.written / max(1e-9, rec.last_s - rec.first_s):,.0f} events/s (kept up: {rec.written:,} written) | "
            f"{_percentile(rec.lags_ms, 0.5):.1f} / {_percentile(rec.lags_ms, 0.99):.1f} ms | "
            f"{max(rec.lags_ms, default=float('nan')):.1f} ms | {cpu / max(1, done) * 1e6:,.0f} µs |"
        )
    finally:
        broker.stop()
        redis_server.stop()
    print(f"load average before/after: {os.getloadavg()[0]:.1f}")
    print("| scenario | events | throughput | lag p50 / p99 | lag max | ingest CPU / event |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
