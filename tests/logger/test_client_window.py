"""LoggerClient's batch window: events share a Publish batch until it is full or its oldest event
waited `max_wait_s`; a full batch and stop() do not wait for the window. Against a small recording
Publish server (the client's batching is what is tested; the real logger is in test_logger_service)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from logger_support import make_event, wait_for

from predmesh.clients.logger import LoggerClient
from predmesh.v1 import events_pb2_grpc
from predmesh.v1.events_pb2 import EventBatch, PublishAck


class RecordingLogger(events_pb2_grpc.LoggerServiceServicer):
    """Acks every batch at once and keeps the number of events of each one."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    async def Publish(
        self, request_iterator: AsyncIterator[EventBatch], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[PublishAck]:
        async for batch in request_iterator:
            self.batches.append(len(batch.events))
            yield PublishAck(sequence=batch.sequence, accepted=len(batch.events))


@pytest.fixture
async def logger() -> AsyncIterator[tuple[RecordingLogger, str]]:
    server = grpc.aio.server()
    recording = RecordingLogger()
    events_pb2_grpc.add_LoggerServiceServicer_to_server(recording, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield recording, f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


def acked(client: LoggerClient, n: int) -> bool:
    return client.stats.acked == n


async def until(condition: Callable[[], bool]) -> None:
    await wait_for(condition, 10.0, "acks")


async def test_events_of_one_window_leave_in_one_batch(logger: tuple[RecordingLogger, str]) -> None:
    recording, address = logger
    client = LoggerClient(address, max_wait_s=0.2)
    await client.start()
    try:
        for i in range(3):  # three emits with loop turns between them: still one batch
            assert client.emit(make_event(i))
            await asyncio.sleep(0)
        assert client.emit_many([make_event(3), make_event(4)]) == 2
        await until(lambda: client.stats.acked == 5)
        assert recording.batches == [5]
    finally:
        assert await client.stop(timeout_s=5)


async def test_a_full_batch_leaves_before_its_window_ends(logger: tuple[RecordingLogger, str]) -> None:
    recording, address = logger
    client = LoggerClient(address, max_batch=4, max_wait_s=60.0)
    await client.start()
    try:
        assert client.emit(make_event(0))
        await asyncio.sleep(0.05)  # the sender is inside the 60 s window of event 0 now
        assert client.emit_many([make_event(i) for i in range(1, 4)]) == 3
        await until(lambda: client.stats.acked == 4)  # far sooner than the window
        assert recording.batches == [4]
    finally:
        await client.stop(timeout_s=5)


async def test_stop_flushes_an_open_window_at_once(logger: tuple[RecordingLogger, str]) -> None:
    recording, address = logger
    client = LoggerClient(address, max_wait_s=60.0)
    await client.start()
    assert client.emit(make_event(0))
    await asyncio.sleep(0.05)
    assert await client.stop(timeout_s=5)  # would time out waiting for the 60 s window
    assert client.stats.acked == 1 and recording.batches == [1]


async def test_without_a_window_each_write_goes_out_alone(logger: tuple[RecordingLogger, str]) -> None:
    recording, address = logger
    client = LoggerClient(address, max_wait_s=0.0)
    await client.start()
    try:
        for i in range(3):
            assert client.emit(make_event(i))
            await until(functools.partial(acked, client, i + 1))
        assert recording.batches == [1, 1, 1]
    finally:
        assert await client.stop(timeout_s=5)
