"""Caller side of the logger: fire-and-forget `emit()` over one long-lived Publish stream.

Library layer (imports only predmesh.common and predmesh.v1): the gateway imports it
without importing the logger service. Usage (gateway / orchestrator):

    client = LoggerClient("127.0.0.1:50070")
    await client.start()
    client.emit(event)          # never blocks; False = dropped (buffer full) or rejected
    client.emit_many(events)    # the same for many events at once; returns how many were accepted
    ...
    await client.stop(timeout_s=5)  # flushes what it can within the timeout

Lifecycle and threading: `start`, `emit` and `stop` are called from the event loop that
ran `start()`; `emit` is a plain method (no await, no I/O). Ownership of an emitted
event passes to the client: do not mutate it afterwards.

Wire form: each event is serialized once, in `emit`, straight into its framing as one
`EventBatch.events` entry; a batch is the concatenation of those bytes behind its
sequence number (`encode_batch`), and the Publish stream carries bytes (no message is
built or copied again; a resend writes the same bytes).

Delivery: a background task batches buffered events (a batch leaves when it holds
`max_batch` events or when its oldest event has waited `max_wait_s`; at once on stop),
writes them on the stream with increasing sequence numbers and keeps each batch until
its PublishAck arrives (the logger acks once the batch is fsynced to its journal). On
any stream failure it reconnects with back-off and resends every unacknowledged batch
in order: at-least-once, so the logger may see a batch twice. A batch the logger rejects
as INVALID_ARGUMENT is dropped and counted in `rejected` (resending it would fail forever).

Memory bound: at most `max_pending` events are buffered or unacknowledged; beyond
that `emit` returns False and counts a drop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import grpc

from predmesh.clients.events import InvalidEvent, validate_event
from predmesh.common.grpcclient import channel
from predmesh.common.tls import TlsFiles
from predmesh.v1.events_pb2 import PredictionEvent, PublishAck

log = logging.getLogger(__name__)

PUBLISH_METHOD = "/predmesh.v1.LoggerService/Publish"
_SEQUENCE_TAG = b"\x08"  # EventBatch.sequence: field 1, varint
_EVENT_TAG = b"\x12"  # EventBatch.events: field 2, length-delimited


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def frame_event(event: PredictionEvent) -> bytes:
    """`event` serialized once, framed as one `EventBatch.events` entry."""
    payload = event.SerializeToString()
    return _EVENT_TAG + _varint(len(payload)) + payload


def encode_batch(sequence: int, frames: list[bytes]) -> bytes:
    """The wire form of `EventBatch(sequence=sequence, events=...)` from framed events."""
    return _SEQUENCE_TAG + _varint(sequence) + b"".join(frames)


def _set_done(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass(frozen=True)
class ClientStats:
    emitted: int  # accepted by emit()
    acked: int  # acknowledged by the logger (durable there)
    dropped: int  # refused by emit() because the buffer was full or the client stopped
    rejected: int  # malformed: refused by emit() or by the logger
    resent_batches: int  # batches written again after a reconnect
    pending: int  # buffered + sent-but-unacknowledged events


class LoggerClient:
    """Bounded, non-blocking, at-least-once event shipper to LoggerService.Publish."""

    def __init__(
        self,
        target: str,
        *,
        max_pending: int = 50_000,
        max_batch: int = 500,
        max_wait_s: float = 0.005,
        max_unacked_batches: int = 64,
        ack_timeout_s: float = 30.0,
        reconnect_backoff_max_s: float = 2.0,
        tls: TlsFiles | None = None,
    ) -> None:
        self._target = target
        self._tls = tls
        self._max_pending = max_pending
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._max_unacked = max_unacked_batches
        self._ack_timeout_s = ack_timeout_s
        self._backoff_max_s = reconnect_backoff_max_s
        self._buffer: collections.deque[bytes] = collections.deque()  # framed events
        # sequence -> (events in it, the batch's wire bytes), until acknowledged
        self._unacked: collections.OrderedDict[int, tuple[int, bytes]] = collections.OrderedDict()
        self._pending = 0
        self._sequence = 0
        self._first_at = 0.0  # monotonic time the oldest buffered event arrived
        self._waiter: asyncio.Future[None] | None = None  # the sender task's current wait, if any
        self._wake_when_full = False  # that wait is for the batch window: only a full batch ends it early
        self._channel: grpc.aio.Channel | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._closed = False
        self._last_progress = time.monotonic()
        self._emitted = self._acked = self._dropped = self._rejected = self._resent = 0

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        """Open the channel and start the sender task (connects lazily; never fails on a down logger)."""
        self._channel = channel(self._target, self._tls)
        self._task = asyncio.create_task(self._run(), name=f"logger-client:{self._target}")

    async def stop(self, timeout_s: float = 5.0) -> bool:
        """Flush buffered and unacknowledged events for up to `timeout_s`; True when all were acked."""
        self._closed = True
        self._stopping = True
        self._wake()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            except (TimeoutError, Exception):
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
        if self._pending:
            log.warning("logger client stopped with %d events not acknowledged (lost)", self._pending)
        return self._pending == 0

    # -- caller API ----------------------------------------------------------------
    def emit(self, event: PredictionEvent) -> bool:
        """Queue one event; never blocks. False when dropped (buffer full / stopped) or malformed."""
        accepted = self._queue(event)
        if accepted:
            self._wake_sender()
        return accepted

    def emit_many(self, events: Iterable[PredictionEvent]) -> int:
        """Queue several events (e.g. a coalesced batch's); never blocks. Returns how many were
        accepted; each refused one is counted as in `emit` (dropped or rejected)."""
        accepted = sum(self._queue(event) for event in events)
        if accepted:
            self._wake_sender()
        return accepted

    def _wake_sender(self) -> None:
        """After events were queued: end the sender's idle wait, or its batch window once a batch is full."""
        if not self._wake_when_full or len(self._buffer) >= self._max_batch:
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _queue(self, event: PredictionEvent) -> bool:
        try:
            validate_event(event)
        except InvalidEvent as err:
            self._rejected += 1
            log.debug("logger client rejected event: %s", err.message)
            return False
        if self._closed or self._pending >= self._max_pending:
            self._dropped += 1
            return False
        if not self._buffer:
            self._first_at = time.monotonic()
        self._buffer.append(frame_event(event))
        self._pending += 1
        self._emitted += 1
        return True

    @property
    def stats(self) -> ClientStats:
        return ClientStats(
            emitted=self._emitted,
            acked=self._acked,
            dropped=self._dropped,
            rejected=self._rejected,
            resent_batches=self._resent,
            pending=self._pending,
        )

    # -- sender task -------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = 0.05
        failures = 0
        while not (self._stopping and self._pending == 0):
            try:
                await self._session()
                backoff, failures = 0.05, 0
                continue
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.INVALID_ARGUMENT and self._unacked:
                    seq, (count, _) = self._unacked.popitem(last=False)
                    self._pending -= count
                    self._rejected += count
                    log.error("logger rejected batch %d (%d events): %s", seq, count, err.details())
                    continue
                failures += 1
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(level, "logger stream to %s failed (%s); reconnecting", self._target, err.code().name)
            except Exception as err:
                failures += 1
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(level, "logger stream to %s failed (%r); reconnecting", self._target, err)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._backoff_max_s)

    async def _session(self) -> None:
        assert self._channel is not None
        publish = self._channel.stream_stream(
            PUBLISH_METHOD, request_serializer=None, response_deserializer=PublishAck.FromString
        )  # requests are EventBatch wire bytes (encode_batch)
        call = publish(wait_for_ready=True)
        acks = asyncio.create_task(self._read_acks(call))
        acks.add_done_callback(lambda _: self._wake())
        try:
            self._last_progress = time.monotonic()
            for _, batch in list(self._unacked.values()):
                await call.write(batch)
                self._resent += 1
            while True:
                if acks.done():
                    acks.result()
                    raise ConnectionError("logger closed the stream")
                if self._buffer and len(self._unacked) < self._max_unacked:
                    if len(self._buffer) < self._max_batch and not self._stopping:
                        left = self._first_at + self._max_wait_s - time.monotonic()
                        if left > 0:  # the batch window of the oldest buffered event is still open
                            await self._wait(left, until_full=True)
                            continue
                    await call.write(self._next_batch())
                    continue
                if self._stopping and not self._buffer and not self._unacked:
                    await call.done_writing()
                    await acks
                    return
                await self._wait(1.0)
                if self._unacked and time.monotonic() - self._last_progress > self._ack_timeout_s:
                    raise TimeoutError(f"no ack from the logger for {self._ack_timeout_s:.0f}s")
        finally:
            if not acks.done():
                acks.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await acks
            call.cancel()

    def _next_batch(self) -> bytes:
        n = min(len(self._buffer), self._max_batch)
        frames = [self._buffer.popleft() for _ in range(n)]
        self._sequence += 1
        batch = encode_batch(self._sequence, frames)
        self._unacked[self._sequence] = (n, batch)
        return batch

    async def _wait(self, timeout_s: float, until_full: bool = False) -> None:
        """Sleep up to `timeout_s`; woken early by stop(), the ack stream ending and, unless
        `until_full`, by an emit or an ack (`until_full`: only by a full batch). One future and
        one timer per wait."""
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        self._wake_when_full = until_full
        timer = loop.call_later(timeout_s, _set_done, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
            self._wake_when_full = False

    async def _read_acks(self, call: grpc.aio.StreamStreamCall) -> None:
        ack: PublishAck
        async for ack in call:
            entry = self._unacked.pop(ack.sequence, None)
            if entry is not None:
                n = entry[0]
                self._pending -= n
                self._acked += n
            self._last_progress = time.monotonic()
            if not self._wake_when_full:
                self._wake()
