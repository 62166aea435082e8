"""The logger pipeline: journal first (durable ack), Kafka second (background, in order).

Two threads, owned by `LogPipeline` and started/stopped by `start()` / `stop()`:

- writer: group commit. `await append(payloads)` queues a batch; the writer drains
  every queued batch, appends them to the journal with ONE fsync, then resolves each
  caller's future on its event loop. A resolved append is durable.
- delivery: reads the journal from the committed offset, produces each record
  (never waiting for a single delivery; at most `max_in_flight` unconfirmed), and
  advances the journal's committed offset over the contiguous prefix of confirmed
  records (offsets commit in order even when partitions confirm out of order).

Failures: a delivery error stops feeding, waits for the outstanding reports, then
rewinds the reader to the committed offset and produces again (at-least-once: records
confirmed after the first failure are produced twice). Timeouts, purges, fatal
errors and "all brokers down" also replace the producer once the broker answers
metadata again (tansu: a live idempotent producer never recovers after a broker
restart). While Kafka is down, appends keep landing in the journal ("spilled").
Records the broker can never accept (too large, invalid) go to a dead-letter file
and count as dropped. If the delivery loop itself fails (an unexpected exception, e.g.
from a producer in a fatal state), it rebuilds the producer and replays from the
committed offset after a back-off, without a process restart; `healthy` turns False
after `_STUCK_AFTER` such failures in a row (until a delivery succeeds again), while
the journal has failed (fsync error) and while it is full, so the app reports NOT_SERVING.

Full journal (`journal_max_bytes` of unconfirmed segments): appends are refused with
JournalFull (UNAVAILABLE, the client keeps and retries them), counted in
`events_rejected_total{reason="journal_full"}`, and `journal_full` is 1. Nothing already
journaled is ever overwritten or dropped to make room.

The event loop never blocks: journal I/O and producer polling run in the threads.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from google.protobuf.message import DecodeError

from predmesh.common.errors import PredmeshError
from services.logger.core.events import route
from services.logger.core.journal import Journal, encode_records
from services.logger.core.metrics import LoggerMetrics
from services.logger.core.producer import KafkaSink, Outcome, classify
from services.logger.errors import JournalError, JournalFull

log = logging.getLogger(__name__)

SinkFactory = Callable[[Callable[[KafkaError], None]], KafkaSink]
_GROUP_MAX = 512  # most caller batches merged into one fsync
_READ_MAX = 2000  # most records read from the journal per feed
_STUCK_AFTER = 3  # delivery-loop failures in a row before `healthy` turns False


@dataclass
class _Append:
    payloads: list[bytes]
    future: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop


def _resolve(fut: asyncio.Future[None], err: BaseException | None) -> None:
    if fut.done():
        return
    if err is None:
        fut.set_result(None)
    else:
        fut.set_exception(err)


class LogPipeline:
    """Journal + background Kafka delivery. `append` is the only method for request paths."""

    def __init__(
        self,
        journal: Journal,
        sink_factory: SinkFactory,
        metrics: LoggerMetrics,
        *,
        topic: str,
        shadow_topic: str,
        outcome_topic: str = "outcomes",
        max_in_flight: int,
        delivery_timeout_s: float,
        checkpoint_interval_s: float = 0.2,
        retry_backoff_max_s: float = 5.0,
        journal_max_bytes: int = 0,
    ) -> None:
        self._journal = journal
        self._sink_factory = sink_factory
        self._metrics = metrics
        self._topic = topic
        self._shadow_topic = shadow_topic
        self._outcome_topic = outcome_topic
        self._max_in_flight = max_in_flight
        self._delivery_timeout_s = delivery_timeout_s
        self._checkpoint_interval_s = checkpoint_interval_s
        self._backoff_max_s = retry_backoff_max_s
        self._journal_max_bytes = journal_max_bytes
        self._dead_letter_path = Path(journal.directory) / "dead-letter.records"

        self._appends: queue.SimpleQueue[_Append | None] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._stop_deadline = 0.0
        self._writer: threading.Thread | None = None
        self._delivery: threading.Thread | None = None
        self._kafka_up = True
        self._closed = False
        self._loop_failures = 0  # delivery-loop failures since the last confirmed delivery
        self._full = False

        # Delivery-thread state (touched only by that thread and the callbacks it polls).
        self._sink: KafkaSink | None = None
        self._generation = 0
        self._order: collections.deque[int] = collections.deque()
        self._confirmed: set[int] = set()
        self._failure: Outcome | None = None
        self._failed_at = 0.0
        self._backoff_s = 0.1
        self._replay_until = 0
        self._n_produced = 0
        self._n_replayed = 0

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(self._journal.open)
        self._writer = threading.Thread(target=self._run_writer, name="logger-journal-writer", daemon=True)
        self._delivery = threading.Thread(target=self._run_delivery, name="logger-kafka-delivery", daemon=True)
        self._writer.start()
        self._delivery.start()

    async def stop(self, flush_timeout_s: float) -> None:
        """Stop accepting, then deliver the backlog for up to `flush_timeout_s`; the rest stays journaled."""
        if self._closed:
            return
        self._closed = True
        self._appends.put(None)
        if self._writer is not None:
            await asyncio.to_thread(self._writer.join)
        self._stop_deadline = time.monotonic() + flush_timeout_s
        self._stopping.set()
        self._wake.set()
        if self._delivery is not None:
            await asyncio.to_thread(self._delivery.join)
        await asyncio.to_thread(self._journal.close)

    @property
    def kafka_up(self) -> bool:
        return self._kafka_up

    @property
    def healthy(self) -> bool:
        """False while events cannot make progress: journal failed or full, or delivery keeps failing."""
        return self._journal.failed is None and not self._is_full() and self._loop_failures < _STUCK_AFTER

    def _is_full(self) -> bool:
        full = bool(self._journal_max_bytes) and self._journal.backlog_bytes() >= self._journal_max_bytes
        if full != self._full:
            self._full = full
            self._metrics.journal_full.set(1 if full else 0)
            if full:
                log.error("journal full (%d bytes unsent): refusing new events", self._journal.backlog_bytes())
            else:
                log.warning("journal has room again: accepting events")
        return full

    # -- request path (event loop) -----------------------------------------------
    async def append(self, payloads: list[bytes]) -> None:
        """Journal `payloads` durably (fsynced) before returning. Raises JournalFull / JournalError."""
        if self._closed:
            raise JournalError("logger is shutting down")
        if self._is_full():
            self._metrics.rejected.labels("journal_full").inc(len(payloads))
            raise JournalFull("journal full: Kafka has been unreachable too long, retry later")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._appends.put(_Append(payloads, fut, loop))
        await fut

    # -- writer thread --------------------------------------------------------------
    def _run_writer(self) -> None:
        done = False
        while not done:
            first = self._appends.get()
            if first is None:
                break
            group = [first]
            while len(group) < _GROUP_MAX:
                try:
                    nxt = self._appends.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    done = True
                    break
                group.append(nxt)
            payloads = [p for item in group for p in item.payloads]
            err: BaseException | None = None
            try:
                self._journal.append(payloads)
            except PredmeshError as exc:  # JournalWriteFailed (undone, retryable) or JournalError (failed)
                log.error("journal append failed: %s", exc)
                self._metrics.rejected.labels("journal_error").inc(len(payloads))
                err = exc
            except Exception as exc:  # never let the writer thread die: fail this group, keep going
                log.exception("journal append failed unexpectedly")
                err = JournalError(f"journal append failed: {exc}")
            if err is None:
                self._metrics.accepted.inc(len(payloads))
                if not self._kafka_up:
                    self._metrics.spilled.inc(len(payloads))
                self._wake.set()
            for item in group:
                try:
                    item.loop.call_soon_threadsafe(_resolve, item.future, err)
                except RuntimeError:  # the caller's loop is closed: nobody waits for this ack
                    pass

    # -- delivery thread ------------------------------------------------------------
    def _run_delivery(self) -> None:
        """Run the delivery loop; when it fails, rebuild the producer and replay from the journal."""
        while True:
            try:
                self._delivery_loop()
                return
            except Exception:
                self._loop_failures += 1
                self._kafka_up = False
                self._metrics.kafka_up.set(0)
                self._metrics.producer_restarts.inc()  # the loop starts again with a new producer
                log.exception(
                    "logger delivery loop failed (%d in a row): new producer, replay from journal offset %d in %.1fs",
                    self._loop_failures,
                    self._journal.committed_offset,
                    self._backoff_s,
                )
                self._drop_sink()
                self._sleep_backoff()
                if self._stopping.is_set() and time.monotonic() >= self._stop_deadline:
                    return

    def _drop_sink(self) -> None:
        sink, self._sink = self._sink, None
        self._generation += 1  # reports from the old producer are ignored from now on
        if sink is not None:
            try:
                sink.purge()
            except Exception as err:
                log.debug("purging the failed producer: %s", err)

    def _delivery_loop(self) -> None:
        if self._sink is not None:
            self._drop_sink()
        self._order.clear()
        self._confirmed.clear()
        self._failure = None
        self._sink = self._sink_factory(self._on_error)
        self._reader = self._journal.reader(self._journal.committed_offset)
        self._replay_until = max(self._replay_until, self._journal.end_offset)
        last_checkpoint = time.monotonic()
        while True:
            if self._stopping.is_set() and self._drained_or_late():
                break
            self._wake.clear()
            fed = 0
            if self._failure is None:
                fed = self._feed()
            else:
                self._recover()
            if self._order:
                self._sink.poll(0 if fed else 0.02)
            else:
                self._sink.poll(0)  # serves error_cb too: broker loss is noticed while idle
                if not fed and self._failure is None:
                    self._wake.wait(0.05)
            self._advance_commit()
            now = time.monotonic()
            if now - last_checkpoint >= self._checkpoint_interval_s:
                self._checkpoint()
                last_checkpoint = now
        self._shutdown_delivery()

    def _drained_or_late(self) -> bool:
        if time.monotonic() >= self._stop_deadline:
            return True
        return self._failure is None and not self._order and self._reader.offset >= self._journal.end_offset

    def _shutdown_delivery(self) -> None:
        assert self._sink is not None
        left = max(0.0, self._stop_deadline - time.monotonic())
        if self._order and self._failure is None and left > 0:
            self._sink.flush(left)
        self._sink.poll(0)
        self._advance_commit()
        self._checkpoint()
        backlog = self._journal.backlog
        if backlog:
            log.warning(
                "logger stopped with %d journaled events not confirmed by Kafka (replayed at next start)",
                backlog,
            )
        self._sink = None

    def _feed(self) -> int:
        room = self._max_in_flight - len(self._order)
        if room <= 0:
            return 0
        start = self._reader.offset
        payloads = self._reader.read(min(room, _READ_MAX))
        sink = self._sink
        assert sink is not None
        gen = self._generation
        for i, payload in enumerate(payloads):
            offset = start + i
            self._order.append(offset)
            try:
                r = route(payload, self._topic, self._shadow_topic, self._outcome_topic)
            except DecodeError:
                self._dead_letter(offset, payload, "undecodable")
                continue
            callback = functools.partial(self._on_delivery, gen, offset)
            try:
                while not sink.produce(r.topic, payload, r.key, r.headers, callback):
                    sink.poll(0.05)  # librdkafka queue full (headroom is 2x max_in_flight, so rare)
            except KafkaException as err:  # e.g. the producer is in a fatal state (UNKNOWN_PRODUCER_ID)
                self._fail(Outcome.RESTART, f"produce failed: {err}")
                break
        return len(payloads)

    def _on_delivery(self, gen: int, offset: int, err: KafkaError | None, msg: Any) -> None:
        if gen != self._generation:
            return  # report from a producer we already replaced
        outcome = classify(err)
        if outcome is Outcome.OK:
            self._confirmed.add(offset)
            self._loop_failures = 0
            self._n_produced += 1
            if offset < self._replay_until:
                self._n_replayed += 1
            if not self._kafka_up:
                log.info("kafka deliveries succeed again")
                self._kafka_up = True
            self._backoff_s = 0.1
            return
        assert err is not None
        if outcome is Outcome.PERMANENT:
            log.error("kafka rejected event at journal offset %d permanently (%s): dead-lettered", offset, err)
            self._dead_letter(offset, msg.value() if msg is not None else b"", err.name())
            return
        self._metrics.delivery_errors.labels(err.name()).inc()
        self._fail(outcome, f"delivery of offset {offset} failed: {err}")

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal() or err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._fail(Outcome.RESTART, f"producer error: {err}")
        else:
            log.debug("producer error (librdkafka retries): %s", err)

    def _fail(self, outcome: Outcome, why: str) -> None:
        if self._failure is None:
            self._failed_at = time.monotonic()
            log.warning("kafka unavailable, spilling to the journal: %s", why)
        if self._failure is not Outcome.RESTART:
            self._failure = outcome
        self._kafka_up = False

    def _recover(self) -> None:
        """Called repeatedly while failed: wait for reports, replace the producer if needed, rewind."""
        sink = self._sink
        assert sink is not None
        unreported = len(self._order) > len(self._confirmed)
        if self._failure is Outcome.RETRY and unreported:
            if time.monotonic() - self._failed_at < self._delivery_timeout_s + 1.0:
                sink.poll(0.05)
                return
            self._failure = Outcome.RESTART
        if self._failure is Outcome.RESTART:
            if not sink.reachable(timeout_s=min(1.0, self._backoff_s + 0.2)):
                self._sleep_backoff()
                return
            sink.purge()
            deadline = time.monotonic() + 2.0
            while sink.pending() and time.monotonic() < deadline:
                sink.poll(0.05)
            sink.poll(0)
            self._advance_commit()
            self._generation += 1
            self._sink = self._sink_factory(self._on_error)
            self._metrics.producer_restarts.inc()
            log.info(
                "kafka reachable again: new producer, replaying from journal offset %d",
                self._journal.committed_offset,
            )
        else:
            self._sleep_backoff()
            self._advance_commit()
            self._generation += 1
            log.info("retrying kafka delivery from journal offset %d", self._journal.committed_offset)
        self._order.clear()
        self._confirmed.clear()
        self._reader = self._journal.reader(self._journal.committed_offset)
        self._replay_until = max(self._replay_until, self._journal.end_offset)
        self._failure = None

    def _sleep_backoff(self) -> None:
        self._stopping.wait(self._backoff_s)
        self._backoff_s = min(self._backoff_s * 2, self._backoff_max_s)

    def _advance_commit(self) -> None:
        order, confirmed = self._order, self._confirmed
        advanced = False
        while order and order[0] in confirmed:
            confirmed.discard(order.popleft())
            advanced = True
        if advanced:
            self._journal.commit(order[0] if order else self._reader.offset)
        if self._n_produced:
            self._metrics.produced.inc(self._n_produced)
            self._n_produced = 0
        if self._n_replayed:
            self._metrics.replayed.inc(self._n_replayed)
            self._n_replayed = 0
        self._metrics.queue_depth.set(len(order))
        self._metrics.backlog.set(self._journal.backlog)
        self._metrics.kafka_up.set(1 if self._kafka_up else 0)

    def _checkpoint(self) -> None:
        try:
            self._journal.persist_checkpoint()
        except OSError as err:
            log.error("journal checkpoint failed (will retry): %s", err)

    def _dead_letter(self, offset: int, payload: bytes, reason: str) -> None:
        with open(self._dead_letter_path, "ab") as f:
            f.write(encode_records([payload]))
            f.flush()
            os.fsync(f.fileno())
        self._metrics.dropped.labels(reason).inc()
        self._confirmed.add(offset)
        log.error("event at journal offset %d written to %s (%s)", offset, self._dead_letter_path, reason)
