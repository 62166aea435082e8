"""The analytics store's tables (ClickHouse SQL, identical on chdb and a ClickHouse server).

`predictions` and `shadow_predictions` hold one row per logged PredictionEvent, `outcomes`
one per recorded outcome, `spans` one per trace span received over OTLP (local traces),
`rollout_decisions` one per rollout controller decision, `retrain_webhooks` one per drift
monitor retraining-webhook call (keyed by delivery id). All but `rollout_decisions` are
ReplacingMergeTree tables keyed by request (or span) id: the Kafka consumer is at-least-once,
and a redelivered event has the same key, so reads with `FINAL` see it once (the row with the
newest `inserted` wins; duplicates are merged away in the background).
"""

from __future__ import annotations

PREDICTION_COLUMNS = (
    "request_id",
    "entity_id",
    "model",
    "model_version",
    "arm",
    "ts",
    "score",
    "label",
    "latency_ms",
    "degraded",
    "degraded_reason",
    "trace_id",
    "features_hash",
    "inserted",
)
OUTCOME_COLUMNS = ("request_id", "model", "label", "value", "event_time", "ts", "inserted")
SPAN_COLUMNS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "service",
    "name",
    "kind",
    "start",
    "duration_ms",
    "status_code",
    "attributes",
    "inserted",
)
DECISION_COLUMNS = (
    "ts",
    "model",
    "stable_version",
    "canary_version",
    "step",
    "weight",
    "action",
    "reason",
    "evidence",
)

WEBHOOK_COLUMNS = (
    "delivery_id",
    "model",
    "model_version",
    "detected",
    "ts",
    "psi_alert",
    "score_psi",
    "max_feature_psi",
    "feature_psi",
    "drifted",
    "attempts",
    "status",
    "http_status",
    "error",
    "inserted",
)

_PREDICTION_TABLE = """
CREATE TABLE IF NOT EXISTS {db}.{table} (
    request_id String,
    entity_id String,
    model LowCardinality(String),
    model_version LowCardinality(String),
    arm LowCardinality(String),
    ts DateTime64(3, 'UTC'),
    score Float64,
    label String,
    latency_ms Float64,
    degraded UInt8,
    degraded_reason LowCardinality(String),
    trace_id String,
    features_hash String,
    inserted DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(inserted)
PARTITION BY toYYYYMMDD(ts)
ORDER BY (model, request_id, entity_id)
"""

TABLES = {
    "predictions": _PREDICTION_TABLE,
    "shadow_predictions": _PREDICTION_TABLE,
    "outcomes": """
CREATE TABLE IF NOT EXISTS {db}.{table} (
    request_id String,
    model LowCardinality(String),
    label String,
    value Nullable(Float64),
    event_time DateTime64(3, 'UTC'),
    ts DateTime64(3, 'UTC'),
    inserted DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(inserted)
ORDER BY (model, request_id)
""",
    "spans": """
CREATE TABLE IF NOT EXISTS {db}.{table} (
    trace_id String,
    span_id String,
    parent_span_id String,
    service LowCardinality(String),
    name String,
    kind UInt8,
    start DateTime64(6, 'UTC'),
    duration_ms Float64,
    status_code UInt8,
    attributes String,
    inserted DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(inserted)
ORDER BY (trace_id, span_id)
""",
    "retrain_webhooks": """
CREATE TABLE IF NOT EXISTS {db}.{table} (
    delivery_id String,
    model LowCardinality(String),
    model_version String,
    detected DateTime64(3, 'UTC'),
    ts DateTime64(3, 'UTC'),
    psi_alert Float64,
    score_psi Nullable(Float64),
    max_feature_psi Nullable(Float64),
    feature_psi String,
    drifted String,
    attempts UInt32,
    status LowCardinality(String),
    http_status Int32,
    error String,
    inserted DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(inserted)
ORDER BY (model, delivery_id)
""",
    "rollout_decisions": """
CREATE TABLE IF NOT EXISTS {db}.{table} (
    ts DateTime64(3, 'UTC'),
    model LowCardinality(String),
    stable_version String,
    canary_version String,
    step UInt32,
    weight Float64,
    action LowCardinality(String),
    reason String,
    evidence String
) ENGINE = MergeTree
ORDER BY (model, ts)
""",
}


def create_statements(database: str) -> list[str]:
    """`CREATE DATABASE` and every `CREATE TABLE IF NOT EXISTS` (idempotent, run at start)."""
    return [f"CREATE DATABASE IF NOT EXISTS {database}"] + [
        ddl.format(db=database, table=table).strip() for table, ddl in TABLES.items()
    ]
