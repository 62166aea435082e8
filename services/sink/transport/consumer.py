"""Kafka source of the sink: one confluent-kafka consumer thread, batched inserts.

`LogConsumer(config, topics, store, webhook_topic=...)`: `start()` subscribes to `topics`
(predictions, shadow-predictions, outcomes) and `webhook_topic` (retrain-webhooks) and starts a
daemon thread that decodes each record (`PredictionEvent`; a `RetrainWebhookRecord` on
`webhook_topic`), turns it into a row (`core.rows.event_row` / `webhook_row`) and buffers it; a buffer of
`batch_max_rows` rows, or one older than `batch_max_wait_s`, is inserted, one INSERT per table,
and only then are the offsets committed. An insert that fails is retried with back-off and the
consumer does not read further meanwhile (bounded memory). A crash between insert and commit
redelivers the batch: at-least-once, made idempotent by the tables' request-id keys.
`stop()` flushes what is buffered, commits and closes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError
from google.protobuf.message import DecodeError

from predmesh.v1.events_pb2 import PredictionEvent
from predmesh.v1.retrain_pb2 import RetrainWebhookRecord
from services.sink.core.rows import Row, event_row, webhook_row
from services.sink.core.schema import OUTCOME_COLUMNS, PREDICTION_COLUMNS, WEBHOOK_COLUMNS
from services.sink.core.store import AnalyticsStore

log = logging.getLogger(__name__)
_rdkafka_log = logging.getLogger("services.sink.rdkafka")

COLUMNS = {
    "predictions": PREDICTION_COLUMNS,
    "shadow_predictions": PREDICTION_COLUMNS,
    "outcomes": OUTCOME_COLUMNS,
    "retrain_webhooks": WEBHOOK_COLUMNS,
}


@dataclass
class SinkStats:
    consumed: int = 0
    inserted: int = 0
    undecodable: int = 0
    insert_failures: int = 0
    batches: int = 0


class LogConsumer:
    def __init__(
        self,
        config: dict[str, Any],
        topics: list[str],
        store: AnalyticsStore,
        batch_max_rows: int = 5000,
        batch_max_wait_s: float = 0.5,
        retry_backoff_max_s: float = 5.0,
        webhook_topic: str = "",
    ) -> None:
        self._config = {**config, "logger": _rdkafka_log, "enable.auto.commit": False}
        self._topics = [*topics, webhook_topic] if webhook_topic and webhook_topic not in topics else list(topics)
        self._webhook_topic = webhook_topic
        self._store = store
        self._max_rows = batch_max_rows
        self._max_wait_s = batch_max_wait_s
        self._backoff_max_s = retry_backoff_max_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Consumer | None = None
        self._buffer: dict[str, list[tuple[object, ...]]] = defaultdict(list)
        self._buffered = 0
        self._oldest = 0.0
        self.stats = SinkStats()

    def start(self) -> None:
        self._consumer = Consumer(self._config)
        self._consumer.subscribe(self._topics)
        self._thread = threading.Thread(target=self._run, name="sink-consumer", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _add(self, topic: str | None, value: bytes | None) -> None:
        self.stats.consumed += 1
        row: Row | None
        try:
            if self._webhook_topic and topic == self._webhook_topic:
                row = webhook_row(RetrainWebhookRecord.FromString(value or b""))
            else:
                row = event_row(PredictionEvent.FromString(value or b""))
        except DecodeError:
            self.stats.undecodable += 1
            return
        if row is None:
            return
        if not self._buffered:
            self._oldest = time.monotonic()
        self._buffer[row.table].append(row.values)
        self._buffered += 1

    def _flush(self, consumer: Consumer) -> None:
        """Insert the buffer (retrying until it succeeds or the sink stops), then commit."""
        backoff = 0.1
        while self._buffer:
            try:
                for table in list(self._buffer):
                    self._store.insert(table, COLUMNS[table], self._buffer[table])
                    self.stats.inserted += len(self._buffer.pop(table))
            except Exception as err:
                self.stats.insert_failures += 1
                log.warning("sink insert failed (%s rows buffered), retrying: %s", self._buffered, err)
                if self._stop.wait(backoff):
                    log.error("sink stopped with %d rows not inserted (redelivered on restart)", self._buffered)
                    return
                backoff = min(backoff * 2, self._backoff_max_s)
        self._buffered = 0
        self.stats.batches += 1
        try:
            consumer.commit(asynchronous=False)
        except Exception as err:  # nothing to commit, or broker gone: redelivered later (idempotent)
            log.debug("commit skipped: %s", err)

    def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        try:
            while not self._stop.is_set():
                for msg in consumer.consume(min(1000, self._max_rows), 0.1):
                    err = msg.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            log.warning("sink consumer error: %s", err)
                        continue
                    self._add(msg.topic(), msg.value())
                if self._buffered and (
                    self._buffered >= self._max_rows or time.monotonic() - self._oldest >= self._max_wait_s
                ):
                    self._flush(consumer)
            if self._buffered:
                self._flush(consumer)
        except Exception:
            log.exception("sink consumer thread crashed")
        finally:
            consumer.close()
