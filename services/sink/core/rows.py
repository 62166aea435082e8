"""Log records -> table rows: which table each event goes to, and its column values
(`event_row` for PredictionEvents of the prediction log, shadow predictions and outcomes;
`webhook_row` for the drift monitor's RetrainWebhookRecords).

Pure functions, safe from any thread. Times are unix seconds (floats); both stores accept
them for DateTime64 columns.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from predmesh.clients.events import OUTCOME_ARM, SHADOW_ARM
from predmesh.v1.events_pb2 import PredictionEvent
from predmesh.v1.retrain_pb2 import RetrainWebhookRecord


@dataclass(frozen=True, slots=True)
class Row:
    table: str
    values: tuple[object, ...]


def event_row(event: PredictionEvent, inserted_s: float | None = None) -> Row | None:
    """The row for one decoded event, or None when it carries no model (nothing to analyse)."""
    if not event.model or not event.request_id:
        return None
    inserted = time.time() if inserted_s is None else inserted_s
    ts = event.timestamp.ToNanoseconds() / 1e9 if event.HasField("timestamp") else inserted
    if event.arm == OUTCOME_ARM:
        outcome = event.outcome
        value = outcome.value if outcome.HasField("value") else None
        event_time = outcome.event_time.ToNanoseconds() / 1e9 if outcome.HasField("event_time") else ts
        return Row("outcomes", (event.request_id, event.model, outcome.label, value, event_time, ts, inserted))
    table = "shadow_predictions" if event.arm == SHADOW_ARM else "predictions"
    return Row(
        table,
        (
            event.request_id,
            event.entity_id,
            event.model,
            event.model_version,
            event.arm,
            ts,
            event.prediction.score,
            event.prediction.label,
            event.latency_ms,
            1 if event.degraded else 0,
            event.degraded_reason,
            event.trace_id,
            event.features_hash,
            inserted,
        ),
    )


def webhook_row(record: RetrainWebhookRecord, inserted_s: float | None = None) -> Row | None:
    """The `retrain_webhooks` row of one webhook call record (None without a delivery id or model).
    `feature_psi` is a JSON object, `drifted` a comma-separated list, `max_feature_psi` NULL
    without features."""
    if not record.delivery_id or not record.model:
        return None
    inserted = time.time() if inserted_s is None else inserted_s
    finished = record.finished_at.ToNanoseconds() / 1e9 if record.HasField("finished_at") else inserted
    detected = record.detected_at.ToNanoseconds() / 1e9 if record.HasField("detected_at") else finished
    features = dict(sorted(record.feature_psi.items()))
    return Row(
        "retrain_webhooks",
        (
            record.delivery_id,
            record.model,
            record.version,
            detected,
            finished,
            record.psi_alert,
            record.score_psi if record.HasField("score_psi") else None,
            max(features.values()) if features else None,
            json.dumps(features),
            ",".join(record.drifted),
            record.attempts,
            record.status,
            record.http_status,
            record.error,
            inserted,
        ),
    )
