"""The logger's place in each request's trace: one `journal` span per traced event.

An event whose `traceparent` is set (by the gateway, from its request span) gets a span
`predmesh.logger/journal` as a child of that context, from the moment its batch is read
until the batch is durable (or refused). The event's `traceparent` is then rewritten to
this span's, so the Kafka record's `traceparent` header (core/events.py) lets consumers
continue the same trace. No-op when tracing is off or no event is traced.
"""

from __future__ import annotations

import asyncio

from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from predmesh.common import telemetry
from predmesh.v1.events_pb2 import EventBatch

SPAN_NAME = "predmesh.logger/journal"


def start_journal_spans(batch: EventBatch) -> list[Span]:
    """Start a span per traced event of `batch` and point the events' traceparent at it."""
    if not telemetry.tracing_enabled():
        return []
    spans: list[Span] = []
    tracer = telemetry.tracer()
    for event in batch.events:
        parent = telemetry.context_from_traceparent(event.traceparent)
        if parent is None:
            continue
        span = tracer.start_span(
            SPAN_NAME,
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={"predmesh.request_id": event.request_id, "predmesh.model": event.model},
        )
        spans.append(span)
        event.traceparent = telemetry.traceparent_of(span)
    return spans


def end_journal_spans(spans: list[Span], error: BaseException | None = None) -> None:
    for span in spans:
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end()


def end_when_done(spans: list[Span], task: asyncio.Future[None]) -> None:
    """End `spans` when the journal append `task` completes."""
    if not spans:
        return

    def done(fut: asyncio.Future[None]) -> None:
        error = None if fut.cancelled() else fut.exception()
        end_journal_spans(spans, error)

    task.add_done_callback(done)
