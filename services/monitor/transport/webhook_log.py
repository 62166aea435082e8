"""Recording retraining-webhook calls: one `RetrainWebhookRecord` per call to a Kafka topic.

`WebhookRecorder(producer_config, topic, timeout_s)`: `await record(event, outcome)` produces the
call's record (keyed by delivery id) to `topic` (default `retrain-webhooks`), from which the
analytics sink stores it in its `retrain_webhooks` table (queryable with `predmesh analytics
query`, shown by `predmesh report`). Calls are rare (at most one per model version per cooldown),
so each record gets its own short-lived idempotent producer in a worker thread, flushed within
`timeout_s`: nothing is shared between calls, and a broker restart between two of them does not
leave a stuck producer behind. A record not acknowledged in time raises RecordNotDelivered (the
webhook logs it; the call itself is not retried for it).
"""

from __future__ import annotations

import asyncio
import logging
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
    def __init__(self, producer_config: dict[str, Any], topic: str, timeout_s: float = 10.0) -> None:
        self._config = {**producer_config, "logger": _rdkafka_log}
        self.topic = topic
        self._timeout_s = timeout_s

    async def record(self, event: DriftEvent, outcome: WebhookOutcome) -> None:
        value = webhook_record(event, outcome).SerializeToString()
        await asyncio.to_thread(self._produce, event.delivery_id.encode(), value)
        log.info("retraining webhook delivery %s recorded (%s) to %s", event.delivery_id, outcome.status, self.topic)

    def _produce(self, key: bytes, value: bytes) -> None:
        errors: list[KafkaError] = []

        def delivered(err: KafkaError | None, _msg: Any) -> None:
            if err is not None:
                errors.append(err)

        producer = Producer(self._config)
        producer.produce(self.topic, value, key, on_delivery=delivered)
        left = producer.flush(self._timeout_s)
        if left or errors:
            reason = errors[0].str() if errors else f"not acknowledged within {self._timeout_s:g}s"
            raise RecordNotDelivered(f"webhook record to {self.topic}: {reason}")
