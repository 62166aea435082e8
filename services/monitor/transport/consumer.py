"""Kafka source of the monitor: a confluent-kafka consumer thread decoding PredictionEvents.

`EventConsumer(config, topic, sink)`: `start()` subscribes and starts a daemon thread
that polls, decodes each record into an `Observation` and calls `sink(obs)`; `stop()`
ends the thread and closes the consumer (commits what was processed). Offsets are
committed asynchronously every `commit_every` records: a restarted monitor re-reads at
most that many (duplicates only nudge window statistics).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError
from google.protobuf.message import DecodeError

from predmesh.v1.events_pb2 import PredictionEvent
from services.monitor.core.windows import Observation

log = logging.getLogger(__name__)
_rdkafka_log = logging.getLogger("services.monitor.rdkafka")


def to_observation(event: PredictionEvent) -> Observation:
    features: dict[str, float] = {}
    for name, value in event.features.items():
        kind = value.WhichOneof("kind")
        if kind == "number_value":
            features[name] = value.number_value
        elif kind == "bool_value":
            features[name] = 1.0 if value.bool_value else 0.0
    return Observation(
        model=event.model,
        version=event.model_version,
        timestamp_s=event.timestamp.ToNanoseconds() / 1e9,
        latency_ms=event.latency_ms,
        degraded=event.degraded,
        score=event.prediction.score,
        features=features,
        arm=event.arm,
    )


class EventConsumer:
    def __init__(
        self,
        config: dict[str, Any],
        topic: str,
        sink: Callable[[Observation], None],
        on_record: Callable[[bool], None] | None = None,
        commit_every: int = 1000,
    ) -> None:
        self._config = {**config, "logger": _rdkafka_log, "enable.auto.commit": False}
        self._topic = topic
        self._sink = sink
        self._on_record = on_record or (lambda _ok: None)
        self._commit_every = commit_every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Consumer | None = None

    def start(self) -> None:
        self._consumer = Consumer(self._config)
        self._consumer.subscribe([self._topic])
        self._thread = threading.Thread(target=self._run, name="monitor-consumer", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        since_commit = 0
        try:
            while not self._stop.is_set():
                msgs = consumer.consume(500, 0.2)
                for msg in msgs:
                    err = msg.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            log.warning("monitor consumer error: %s", err)
                        continue
                    try:
                        event = PredictionEvent.FromString(msg.value() or b"")
                    except DecodeError:
                        self._on_record(False)
                        continue
                    self._on_record(True)
                    if event.model:
                        self._sink(to_observation(event))
                    since_commit += 1
                if since_commit >= self._commit_every:
                    consumer.commit(asynchronous=True)
                    since_commit = 0
        except Exception:
            log.exception("monitor consumer thread crashed")
        finally:
            try:
                if since_commit:
                    consumer.commit(asynchronous=False)
            except Exception as err:  # nothing to commit, or broker gone
                log.debug("final commit skipped: %s", err)
            consumer.close()
