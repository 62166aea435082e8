"""The ingestion loop: consume a batch, gate it, write Redis, dead-letter the rejects, commit.

`IngestLoop` owns one confluent-kafka `Consumer` (group member of `topic`) and one
`Producer` (dead-letter topic), both used from its own thread only. Per batch of at most
`batch_max` records:

1. decode and gate every record (`QualityGates`);
2. write the accepted ones in one pipelined Redis round trip (`RedisWriter`; on a Redis
   Cluster one pipeline per master, `ClusterRedisWriter`; newest event
   per entity wins), retried after `retry_backoff_s` until it succeeds or the loop stops;
3. produce the rejected records unchanged to the dead-letter topic with the reason in the
   headers, and flush (retried likewise);
4. only then commit the consumed offsets synchronously.

So delivery is at-least-once: a crash or stop between 1 and 4 re-delivers the batch, and
re-applying it changes nothing (the Redis script ignores events that are not newer; a
dead-letter record may be duplicated). A stopped loop never commits a batch it did not
finish. Lifecycle: `start()` subscribes and starts the thread, `stop()` ends it (the
in-flight batch is finished or abandoned uncommitted) and closes consumer and producer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from services.ingest.core.gates import Accepted, QualityGates, Rejected
from services.ingest.core.writer import Writer
from services.ingest.errors import WriteFailed
from services.ingest.metrics import IngestMetrics
from services.ingest.transport.converters import dead_letter_headers, event_from_record

log = logging.getLogger(__name__)
_rdkafka_log = logging.getLogger("services.ingest.rdkafka")


class IngestLoop:
    def __init__(
        self,
        consumer_config: dict[str, Any],
        producer_config: dict[str, Any],
        topic: str,
        dlq_topic: str,
        gates: QualityGates,
        writer: Writer,
        metrics: IngestMetrics,
        batch_max: int = 500,
        poll_timeout_s: float = 0.1,
        retry_backoff_s: float = 0.2,
        lag_interval_s: float = 5.0,
        on_written: Callable[[list[Accepted]], None] | None = None,
    ) -> None:
        self._consumer_config = {**consumer_config, "logger": _rdkafka_log, "enable.auto.commit": False}
        self._producer_config = {**producer_config, "logger": _rdkafka_log}
        self._topic = topic
        self._dlq_topic = dlq_topic
        self._gates = gates
        self._writer = writer
        self._metrics = metrics
        self._batch_max = batch_max
        self._poll_timeout_s = poll_timeout_s
        self._retry_backoff_s = retry_backoff_s
        self._lag_interval_s = lag_interval_s
        self._on_written = on_written or (lambda _batch: None)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self.batches_committed = 0
        # Called from the thread when it crashed (not on stop); set before `start()`.
        self.on_crash: Callable[[], None] = lambda: None

    def start(self) -> None:
        """Subscribe and start the thread (blocking: call through a thread from async code)."""
        self._stop.clear()
        self._producer = Producer(self._producer_config)
        self._consumer = Consumer(self._consumer_config)
        self._consumer.subscribe([self._topic])
        self._thread = threading.Thread(target=self._run, name="ingest-consumer", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """True while the consumer thread runs (False after `stop()` or a crash)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout_s: float = 10.0) -> None:
        """End the thread and close the clients (blocking)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("ingest consumer thread did not stop within %.1fs", timeout_s)
            self._thread = None

    def _run(self) -> None:
        consumer, producer = self._consumer, self._producer
        assert consumer is not None and producer is not None
        next_lag = 0.0
        try:
            while not self._stop.is_set():
                msgs = consumer.consume(self._batch_max, self._poll_timeout_s)
                records = [m for m in msgs if self._usable(m)]
                if records and self._process(consumer, producer, records):
                    self.batches_committed += 1
                if time.monotonic() >= next_lag:
                    next_lag = time.monotonic() + self._lag_interval_s
                    self._update_consumer_lag(consumer)
        except Exception:
            log.exception("ingest consumer thread crashed")
            self.on_crash()
        finally:
            producer.flush(5.0)
            consumer.close()

    @staticmethod
    def _usable(msg: Message) -> bool:
        err = msg.error()
        if err is None:
            return True
        if err.code() != KafkaError._PARTITION_EOF:
            log.warning("ingest consumer error: %s", err)
        return False

    def _process(self, consumer: Consumer, producer: Producer, records: list[Message]) -> bool:
        """One batch; True when it was written and committed, False when the loop stopped first."""
        accepted: list[Accepted] = []
        rejected: list[tuple[Message, Rejected]] = []
        m = self._metrics
        for msg in records:
            decoded = event_from_record(msg.value())
            outcome = self._gates.check(decoded) if not isinstance(decoded, Rejected) else decoded
            if isinstance(outcome, Accepted):
                accepted.append(outcome)
                for feature, check in outcome.warnings:
                    m.warnings.labels(outcome.entity_type, feature, check).inc()
            else:
                rejected.append((msg, outcome))
        written = self._retry(lambda: self._writer.write(accepted), "redis write", m.redis_errors.inc)
        if written is None:
            return False
        now_ms = time.time() * 1000.0
        for event, applied in zip(accepted, written, strict=True):
            if applied:
                m.lag.observe(max(0.0, now_ms - event.event_time_ms) / 1000.0)
        n_written = sum(written)
        m.events.labels("written").inc(n_written)
        m.events.labels("ignored_older").inc(len(written) - n_written)
        if n_written:
            self._on_written([e for e, ok in zip(accepted, written, strict=True) if ok])
        if rejected:
            sent = self._retry(lambda: self._dead_letter(producer, rejected), "dead-letter", m.dlq_errors.inc)
            if sent is None:
                return False
        for _msg, why in rejected:
            m.rejected.labels(why.reason).inc()
        m.events.labels("rejected").inc(len(rejected))
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as err:  # e.g. partitions revoked meanwhile: the batch is re-delivered
            log.warning("offset commit failed (batch will be re-delivered): %s", err)
            return False
        return True

    def _dead_letter(self, producer: Producer, rejected: list[tuple[Message, Rejected]]) -> bool:
        failures: list[KafkaError] = []

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(err)

        for msg, why in rejected:
            producer.produce(
                self._dlq_topic,
                value=msg.value(),
                key=msg.key(),
                headers=dead_letter_headers(why, msg.topic() or "", msg.partition() or 0, msg.offset() or 0),
                on_delivery=delivered,
            )
        remaining = producer.flush(max(1.0, self._retry_backoff_s * 10))
        if remaining or failures:
            raise WriteFailed(f"dead-letter produce failed ({remaining} pending, errors: {failures[:3]})")
        return True

    def _retry(self, step: Callable[[], Any], what: str, count: Callable[[], None]) -> Any:
        """Run `step` until it succeeds (its result) or the loop stops (None)."""
        while True:
            try:
                return step()
            except (WriteFailed, KafkaException, BufferError) as err:
                count()
                log.warning("%s failed, retrying in %.2fs: %s", what, self._retry_backoff_s, err)
            if self._stop.wait(self._retry_backoff_s):
                return None

    def _update_consumer_lag(self, consumer: Consumer) -> None:
        try:
            assignment = consumer.assignment()
            if not assignment:
                return
            positions = consumer.position(assignment)
            for tp in positions:
                _low, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=1.0)
                if tp.offset >= 0:
                    self._metrics.consumer_lag.labels(str(tp.partition)).set(max(0, high - tp.offset))
        except KafkaException as err:
            log.debug("consumer lag not refreshed: %s", err)
