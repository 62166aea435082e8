"""Thin wrapper around one confluent-kafka `Producer` plus the error classification.

`KafkaSink` is owned by the pipeline's delivery thread: `produce`, `poll`, `purge`
and `close` are called from that thread only (delivery callbacks run inside `poll`).
`error_cb` runs on the same thread too (librdkafka forwards errors through `poll`).

The config is valid for real Kafka and for tansu: acks=all, idempotence, lz4/zstd.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaError, Producer

log = logging.getLogger(__name__)
_rdkafka_log = logging.getLogger("services.logger.rdkafka")


class _RepeatFilter(logging.Filter):
    """Lets one copy of a repeated librdkafka line through per `every_s` (reconnect loops spam)."""

    def __init__(self, every_s: float = 30.0) -> None:
        super().__init__()
        self._every_s = every_s
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = record.getMessage()[:200]
        now = time.monotonic()
        if now - self._last.get(key, -1e9) < self._every_s:
            return False
        if len(self._last) > 1000:
            self._last.clear()
        self._last[key] = now
        return True


_rdkafka_log.addFilter(_RepeatFilter())
Headers = list[tuple[str, str | bytes | None]]


class Outcome(enum.Enum):
    """What the pipeline does about one delivery report."""

    OK = "ok"
    RETRY = "retry"  # transient: produce again from the journal after a back-off, same producer
    RESTART = "restart"  # producer state is suspect (timeouts, fatal, purged): new producer, then replay
    PERMANENT = "permanent"  # the record itself can never be accepted: dead-letter it


_RESTART_CODES = frozenset(
    {
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._PURGE_QUEUE,
        KafkaError._PURGE_INFLIGHT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._FENCED,
        KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
        KafkaError.UNKNOWN_PRODUCER_ID,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.DUPLICATE_SEQUENCE_NUMBER,
    }
)
_PERMANENT_CODES = frozenset(
    getattr(KafkaError, name)
    for name in ("MSG_SIZE_TOO_LARGE", "INVALID_RECORD", "CORRUPT_MESSAGE", "_INVALID_ARG")
    if hasattr(KafkaError, name)
)


def classify(err: KafkaError | None) -> Outcome:
    if err is None:
        return Outcome.OK
    if err.fatal() or err.code() in _RESTART_CODES:
        return Outcome.RESTART
    if err.code() in _PERMANENT_CODES and not err.retriable():
        return Outcome.PERMANENT
    return Outcome.RETRY


def producer_config(
    bootstrap_servers: str,
    *,
    client_id: str,
    compression: str,
    linger_ms: int,
    delivery_timeout_ms: int,
    max_in_flight: int,
    extra: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """librdkafka properties for a durable, idempotent, compressed producer."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "client.id": client_id,
        "acks": "all",
        "enable.idempotence": True,
        "compression.type": compression,
        "linger.ms": linger_ms,
        "message.timeout.ms": delivery_timeout_ms,
        # Our own bound (max_in_flight) is the real limit; leave librdkafka headroom above it.
        "queue.buffering.max.messages": max(max_in_flight * 2, 1000),
        "retry.backoff.ms": 100,
        "retry.backoff.max.ms": 1000,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 1000,
        "socket.keepalive.enable": True,
    }
    locked = sorted(k for k in (extra or {}) if k.lower() in _DURABILITY)
    if locked:
        raise ValueError(f"kafka_extra may not override delivery guarantees: {locked}")
    config.update(extra or {})
    return config


# Properties that make the log durable and exactly-once per partition; extra config (SASL, TLS,
# tuning) may not weaken them.
_DURABILITY = frozenset(
    {"acks", "request.required.acks", "enable.idempotence", "max.in.flight.requests.per.connection", "max.in.flight"}
)


class KafkaSink:
    """One live producer. Create a new one after `Outcome.RESTART`; never reuse a closed one."""

    def __init__(self, config: Mapping[str, Any], on_error: Callable[[KafkaError], None]) -> None:
        self._on_error = on_error
        self._producer = Producer(dict(config), error_cb=self._error, logger=_rdkafka_log)

    def _error(self, err: KafkaError) -> None:
        self._on_error(err)

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Headers,
        on_delivery: Callable[[KafkaError | None, Any], None],
    ) -> bool:
        """Queue one record; False when librdkafka's local queue is full (poll, then retry)."""
        try:
            self._producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
        except BufferError:
            return False
        return True

    def poll(self, timeout_s: float) -> int:
        """Serve delivery reports and errors (callbacks run here); returns events served."""
        return int(self._producer.poll(timeout_s))

    def pending(self) -> int:
        """Records queued or in flight inside librdkafka."""
        return len(self._producer)

    def reachable(self, timeout_s: float) -> bool:
        """True when a metadata request succeeds (used to detect the broker coming back)."""
        try:
            md = self._producer.list_topics(timeout=timeout_s)
        except Exception:
            return False
        return len(md.brokers) > 0

    def purge(self) -> None:
        """Drop everything queued/in flight; each record gets a _PURGE_* delivery report on the next poll."""
        self._producer.purge(in_queue=True, in_flight=True, blocking=False)

    def flush(self, timeout_s: float) -> int:
        """Wait up to `timeout_s` for outstanding deliveries; returns how many are still pending."""
        return int(self._producer.flush(timeout_s))
