"""Logger end to end on real tansu: exact delivery, routing, validation, metrics, tail, client bound."""

from __future__ import annotations

import asyncio
import io
import json
import time
import urllib.request

import grpc
import pytest
from logger_support import RunLogger, Topics, consume, ensure_topics, make_event, request_ids, wait_for

from predmesh.clients.logger import LoggerClient
from predmesh.common.grpcclient import insecure_channel
from predmesh.local.kafka import DEV_CONSUMER_TIMEOUTS, TansuBroker
from predmesh.local.procs import free_port
from predmesh.v1 import events_pb2_grpc
from predmesh.v1.events_pb2 import EventBatch, PredictionEvent
from services.logger import tail

P = "predmesh_logger_"


async def test_every_event_reaches_kafka_exactly_once(
    tansu: TansuBroker, topics: Topics, run_logger: RunLogger
) -> None:
    ensure_topics(tansu.bootstrap_servers, topics, partitions=2)
    n = 3000
    async with run_logger(tansu.bootstrap_servers, topics, metrics_port=0) as app:
        client = LoggerClient(app.address, max_batch=200)
        await client.start()
        t0 = time.monotonic()
        for i in range(n // 2):
            assert client.emit(make_event(i, arm="shadow" if i % 10 == 0 else "stable"))
        for start in range(n // 2, n, 100):  # the rest in batches, as the gateway's coalescer emits
            events = [make_event(i, arm="shadow" if i % 10 == 0 else "stable") for i in range(start, start + 100)]
            assert client.emit_many(events) == 100
        assert await client.stop(timeout_s=20)
        await wait_for(lambda: app.metrics.value(P + "events_produced_total") >= n, 30, "deliveries")
        elapsed = time.monotonic() - t0
        assert client.stats.acked == n and client.stats.dropped == 0
        m = app.metrics
        assert m.value(P + "events_accepted_total") == n
        assert m.value(P + "events_produced_total") == n
        assert m.value(P + "events_dropped_total", reason="dead_letter") == 0
        await wait_for(lambda: m.value(P + "journal_backlog_events") == 0, 5, "backlog gauge")
        assert m.value(P + "producer_queue_depth") == 0
        with urllib.request.urlopen(f"http://127.0.0.1:{m.port}/metrics", timeout=5) as resp:  # noqa: ASYNC210
            text = resp.read().decode()
        assert f"{P}events_produced_total {float(n)}" in text
        assert f"{P}journal_backlog_events" in text

    messages = await asyncio.to_thread(consume, tansu.bootstrap_servers, topics.both, n)
    ids = request_ids(messages)
    assert len(ids) == n, f"expected exactly {n} messages, got {len(ids)}"
    assert set(ids) == {f"req-{i}" for i in range(n)}
    by_topic = {t: [m for m in messages if m.topic() == t] for t in topics.both}
    assert len(by_topic[topics.shadow]) == n // 10
    sample = by_topic[topics.predictions][0]
    event = PredictionEvent.FromString(sample.value())
    assert event.arm == "stable"
    assert sample.key() == event.entity_id.encode()
    headers = dict(sample.headers() or [])
    assert headers["trace_id"] == event.trace_id.encode()
    assert headers["traceparent"].startswith(f"00-{event.trace_id}-".encode())
    # Per-key order is preserved (one partition per key, journal order).
    seen: dict[bytes, int] = {}
    for msg in by_topic[topics.predictions]:
        i = int(PredictionEvent.FromString(msg.value()).request_id.split("-")[1])
        assert seen.get(msg.key(), -1) < i
        seen[msg.key()] = i
    print(f"logger e2e: {n} events emitted->produced in {elapsed:.2f}s ({n / elapsed:.0f} events/s)")


async def test_malformed_batch_is_rejected_whole(tansu: TansuBroker, topics: Topics, run_logger: RunLogger) -> None:
    async with run_logger(tansu.bootstrap_servers, topics) as app:
        async with insecure_channel(app.address) as channel:
            stub = events_pb2_grpc.LoggerServiceStub(channel)
            bad_model = [make_event(10), PredictionEvent(request_id="x", model="")]
            batches = [
                EventBatch(sequence=1, events=[make_event(0), make_event(1)]),
                EventBatch(sequence=2, events=bad_model),
                EventBatch(sequence=3, events=[make_event(20)]),
            ]
            call = stub.Publish(iter(batches), timeout=10)
            acks = []
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for ack in call:
                    acks.append((ack.sequence, ack.accepted))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "model is required" in (info.value.details() or "")
            assert acks == [(1, 2)]

            call = stub.Publish(iter([EventBatch(sequence=1, events=[PredictionEvent(model="m")])]), timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in call:
                    pass
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "request_id" in (info.value.details() or "")
        # Nothing of a rejected batch was journaled.
        assert app.metrics.value(P + "events_accepted_total") == 2
        await wait_for(lambda: app.metrics.value(P + "events_produced_total") == 2, 15, "deliveries")
    messages = await asyncio.to_thread(consume, tansu.bootstrap_servers, topics.both, 2)
    assert sorted(request_ids(messages)) == ["req-0", "req-1"]


async def test_client_buffer_is_bounded_and_counts_drops() -> None:
    client = LoggerClient(f"127.0.0.1:{free_port()}", max_pending=5)  # nobody listens there
    await client.start()
    t0 = time.perf_counter()
    results = [client.emit(make_event(i)) for i in range(8)]
    emit_s = time.perf_counter() - t0
    assert results == [True] * 5 + [False] * 3
    assert client.stats.dropped == 3 and client.stats.pending == 5
    assert emit_s < 0.05, "emit must never block"
    assert client.emit(PredictionEvent(request_id="r")) is False  # malformed (no model) is refused locally
    assert client.stats.rejected == 1
    assert await client.stop(timeout_s=0.3) is False
    assert client.emit(make_event(99)) is False  # stopped
    assert client.stats.dropped == 4


async def test_tail_prints_decoded_events(tansu: TansuBroker, topics: Topics, run_logger: RunLogger) -> None:
    ensure_topics(tansu.bootstrap_servers, topics, partitions=1)
    async with run_logger(tansu.bootstrap_servers, topics) as app:
        client = LoggerClient(app.address)
        await client.start()
        for i in range(5):
            client.emit(make_event(i, prefix="tail"))
        assert await client.stop(timeout_s=10)
        await wait_for(lambda: app.metrics.value(P + "events_produced_total") == 5, 15, "deliveries")
    out = io.StringIO()
    argv = [
        "--bootstrap",
        tansu.bootstrap_servers,
        "--topic",
        topics.predictions,
        "--from-beginning",
        "--max-messages",
        "5",
        "--idle-timeout-s",
        "20",
    ]
    rc = await asyncio.to_thread(tail.main, argv, out, DEV_CONSUMER_TIMEOUTS)  # tooling's dev timeouts
    assert rc == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["request_id"] for r in rows] == [f"tail-{i}" for i in range(5)]
    assert rows[0]["_topic"] == topics.predictions and rows[0]["model"] == "fraud"
    assert rows[0]["_headers"]["trace_id"] == rows[0]["trace_id"]


async def test_client_reconnects_and_delivers_after_logger_restart(
    tansu: TansuBroker, topics: Topics, run_logger: RunLogger
) -> None:
    ensure_topics(tansu.bootstrap_servers, topics, partitions=1)
    port = free_port()
    client = LoggerClient(f"127.0.0.1:{port}", reconnect_backoff_max_s=0.2)
    await client.start()
    try:
        async with run_logger(tansu.bootstrap_servers, topics, port=port):
            for i in range(200):
                client.emit(make_event(i, prefix="a"))
            await wait_for(lambda: client.stats.pending == 0, 10, "acks from the first logger")
        for i in range(200):  # logger down: buffered, emit still returns at once
            assert client.emit(make_event(i, prefix="b"))
        await asyncio.sleep(0.3)
        async with run_logger(tansu.bootstrap_servers, topics, port=port) as app:
            await wait_for(lambda: client.stats.pending == 0, 15, "acks from the restarted logger")
            await wait_for(lambda: app.metrics.value(P + "journal_backlog_events") == 0, 15, "deliveries")
    finally:
        await client.stop(timeout_s=2)
    assert client.stats.acked == 400 and client.stats.dropped == 0
    messages = await asyncio.to_thread(consume, tansu.bootstrap_servers, topics.both, 400)
    assert set(request_ids(messages)) == {f"{p}-{i}" for p in "ab" for i in range(200)}
