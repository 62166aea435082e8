"""LoggerClient's wire form: events framed once, batches concatenated; emit_many's accounting."""

from __future__ import annotations

from logger_support import make_event

from predmesh.clients.logger import LoggerClient, encode_batch, frame_event
from predmesh.local.procs import free_port
from predmesh.v1.events_pb2 import EventBatch, PredictionEvent


def test_encoded_batch_parses_as_the_event_batch() -> None:
    events = [make_event(i) for i in range(3)]
    events[1].features["amount"].number_value = 12.5
    for sequence in (1, 127, 128, 300, 2**40):  # 1- to 6-byte varints
        wire = encode_batch(sequence, [frame_event(e) for e in events])
        assert wire == EventBatch(sequence=sequence, events=events).SerializeToString()
        assert EventBatch.FromString(wire) == EventBatch(sequence=sequence, events=events)


def test_large_event_length_prefix() -> None:
    event = make_event(0)
    event.entity_id = "e" * 200  # length > 127: a 2-byte length prefix
    event.features["note"].string_value = "x" * 70_000  # > 16383: a 3-byte prefix
    assert EventBatch.FromString(encode_batch(7, [frame_event(event)])).events[0] == event


async def test_emit_many_counts_accepted_rejected_and_dropped() -> None:
    client = LoggerClient(f"127.0.0.1:{free_port()}", max_pending=3)  # nobody listens; never started
    events = [make_event(0), PredictionEvent(model="m"), make_event(1), make_event(2), make_event(3)]
    assert client.emit_many(events) == 3  # the second has no request_id; the fifth overflows
    stats = client.stats
    assert (stats.emitted, stats.rejected, stats.dropped, stats.pending) == (3, 1, 1, 3)
    assert client.emit_many([]) == 0
