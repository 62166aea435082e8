"""LoggerService servicer: thin; validates, hands batches to the pipeline, acks when durable.

Per stream, batches are read and journaled concurrently with acknowledging earlier
ones (the journal's group commit merges them), and acks are sent in arrival order.
A malformed batch ends the stream with INVALID_ARGUMENT after the acks of the batches
before it; nothing of the bad batch is journaled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc

from predmesh.v1 import events_pb2_grpc
from predmesh.v1.events_pb2 import EventBatch, PublishAck
from services.logger.core.pipeline import LogPipeline
from services.logger.transport.converters import ack, batch_to_payloads
from services.logger.transport.tracing import end_journal_spans, end_when_done, start_journal_spans

_PIPELINE_DEPTH = 64  # batches of one stream being journaled before acks are awaited


class LoggerServicer(events_pb2_grpc.LoggerServiceServicer):
    def __init__(self, pipeline: LogPipeline, max_event_bytes: int) -> None:
        self._pipeline = pipeline
        self._max_event_bytes = max_event_bytes

    async def Publish(
        self, request_iterator: AsyncIterator[EventBatch], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[PublishAck]:
        pending: asyncio.Queue[tuple[int, int, asyncio.Task[None]] | BaseException | None] = asyncio.Queue(
            _PIPELINE_DEPTH
        )

        async def read() -> None:
            try:
                async for batch in request_iterator:
                    spans = start_journal_spans(batch)
                    try:
                        payloads = batch_to_payloads(batch, self._max_event_bytes)
                    except Exception as err:
                        end_journal_spans(spans, err)
                        raise
                    task = asyncio.ensure_future(self._pipeline.append(payloads))
                    end_when_done(spans, task)
                    await pending.put((batch.sequence, len(payloads), task))
                await pending.put(None)
            except Exception as err:
                await pending.put(err)

        reader = asyncio.ensure_future(read())
        try:
            while True:
                item = await pending.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                sequence, accepted, task = item
                await task
                yield ack(sequence, accepted)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            while not pending.empty():
                left = pending.get_nowait()
                if isinstance(left, tuple):
                    left[2].cancel()
