"""Recording retraining-webhook calls: one `RetrainWebhookRecord` per call to a Kafka topic.

`WebhookRecorder(producer_config, topic, timeout_s)`: `await record(event, outcome)` produces the
call's record (keyed by delivery id) to `topic` (default `retrain-webhooks`), from which the
analytics sink stores it in its `retrain_webhooks` table (queryable with `predmesh analytics
query`, shown by `predmesh report`). Calls are rare (at most one per model version per cooldown),
so each record gets its own short-lived idempotent producer in a worker thread, flushed within
`timeout_s`: nothing is shared between calls, and a broker restart between two of them does not
leave a stuck producer behind. A record not acknowledged in time stays in a bounded backlog
(`max_backlog` records, oldest dropped first and counted in `dropped`) and raises
RecordNotDelivered (the webhook logs it; the call itself is not retried for it). The backlog is
sent again, oldest first, before the next record and every `retry_s` by `run_retries()` (the
monitor runs it), so a broker restart or outage costs no record while the monitor lives; the
sink keys the table by delivery id, so a record sent twice (an ack lost) is stored once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from confluent_kafka import KafkaError, Producer
from google.protobuf.timestamp_pb2 import Timestamp

from predmesh.common.errors import Unavailable
from predmesh.v1.retrain_pb2 import RetrainWebhookRecord
from services.monitor.core.retrain import DriftEvent, WebhookOutcome

log = logging.getLogger(__name__)
_rdkafka_log = logging.getLogger("services.monitor.rdkafka")


class RecordNotDelivered(Unavailable):
    """Kafka did not acknowledge a webhook record in time."""


def _ts(seconds: float) -> Timestamp:
    out = Timestamp()
    out.FromNanoseconds(int(seconds * 1e9))
    return out


def webhook_record(event: DriftEvent, outcome: WebhookOutcome) -> RetrainWebhookRecord:
    record = RetrainWebhookRecord(
        delivery_id=event.delivery_id,
        model=event.model,
        version=event.version,
        detected_at=_ts(event.detected_s),
        finished_at=_ts(outcome.finished_s),
        psi_alert=event.psi_alert,
        feature_psi=dict(event.feature_psi),
        drifted=event.drifted,
        attempts=outcome.attempts,
        status=outcome.status,
        http_status=outcome.http_status,
        error=outcome.error[:1000],
    )
    if event.score_psi is not None:
        record.score_psi = event.score_psi
    return record


class WebhookRecorder:
    def __init__(
        self,
        producer_config: dict[str, Any],
        topic: str,
        timeout_s: float = 10.0,
        retry_s: float = 30.0,
        max_backlog: int = 1000,
    ) -> None:
        self._config = {**producer_config, "logger": _rdkafka_log}
        self.topic = topic
        self._timeout_s = timeout_s
        self._retry_s = retry_s
        self.backlog: deque[tuple[bytes, bytes]] = deque()  # (key, value), oldest first
        self._max_backlog = max_backlog
        self.dropped = 0
        self._lock = asyncio.Lock()  # one send at a time: the backlog keeps its order

    async def record(self, event: DriftEvent, outcome: WebhookOutcome) -> None:
        """Send the backlog, then this call's record; RecordNotDelivered leaves both in the backlog."""
        value = webhook_record(event, outcome).SerializeToString()
        async with self._lock:
            self._keep(event.delivery_id.encode(), value)
            await self._send_backlog()
        log.info("retraining webhook delivery %s recorded (%s) to %s", event.delivery_id, outcome.status, self.topic)

    async def run_retries(self) -> None:
        """Forever (until cancelled): every `retry_s`, send what the backlog holds."""
        while True:
            await asyncio.sleep(self._retry_s)
            if not self.backlog:
                continue
            async with self._lock:
                try:
                    await self._send_backlog()
                    log.info("webhook records of the backlog sent to %s", self.topic)
                except RecordNotDelivered as err:
                    log.warning("%d webhook record(s) still pending: %s", len(self.backlog), err)

    def _keep(self, key: bytes, value: bytes) -> None:
        self.backlog.append((key, value))
        while len(self.backlog) > self._max_backlog:
            self.backlog.popleft()
            self.dropped += 1
            log.error("webhook record backlog full (%d): the oldest record was dropped", self._max_backlog)

    async def _send_backlog(self) -> None:
        pending = list(self.backlog)
        await asyncio.to_thread(self._produce, pending)
        for _ in pending:  # all acknowledged: only records added meanwhile stay
            self.backlog.popleft()

    def _produce(self, records: list[tuple[bytes, bytes]]) -> None:
        errors: list[KafkaError] = []

        def delivered(err: KafkaError | None, _msg: Any) -> None:
            if err is not None:
                errors.append(err)

        producer = Producer(self._config)
        for key, value in records:
            producer.produce(self.topic, value, key, on_delivery=delivered)
        left = producer.flush(self._timeout_s)
        if left or errors:
            reason = errors[0].str() if errors else f"not acknowledged within {self._timeout_s:g}s"
            raise RecordNotDelivered(f"{len(records)} webhook record(s) to {self.topic}: {reason}")
