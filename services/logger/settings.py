"""Logger settings (env prefix `PREDMESH_LOGGER_`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from predmesh.common.settings import ServerSettings


class LoggerSettings(ServerSettings):
    """Everything the logger service reads from its environment.

    Durations carry their unit in the name (`_ms`, `_s`); sizes are in bytes or events.
    """

    model_config = SettingsConfigDict(env_prefix="PREDMESH_LOGGER_", extra="ignore")
    allowed_clients: dict[str, list[str]] = Field(
        default_factory=lambda: {"/predmesh.v1.LoggerService/*": ["gateway", "inference"]},
        description="mTLS: who may call which method (see ServerSettings); only the gateway publishes today.",
    )

    # -- Kafka ---------------------------------------------------------------
    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated host:port list."
    )
    topic: str = Field("predictions", description="Topic for every event whose arm is not `shadow`.")
    shadow_topic: str = Field("shadow-predictions", description="Topic for events with arm == `shadow`.")
    outcome_topic: str = Field("outcomes", description="Topic for outcome records (arm == `outcome`, RecordOutcome).")
    compression: Literal["lz4", "zstd", "snappy", "gzip", "none"] = Field(
        "lz4", description="Producer compression codec (compression.type)."
    )
    linger_ms: int = Field(5, ge=0, description="Producer batching delay (linger.ms), milliseconds.")
    delivery_timeout_ms: int = Field(
        30_000,
        ge=1000,
        description="Time librdkafka keeps retrying one record before reporting it failed "
        "(message.timeout.ms), milliseconds. The logger then re-produces it from the journal.",
    )
    max_in_flight: int = Field(
        20_000,
        ge=1,
        description="Most events handed to the producer and not yet confirmed (events). "
        "Everything beyond waits in the journal.",
    )
    client_id: str = Field("predmesh-logger", description="Kafka client.id.")
    kafka_extra: dict[str, str] = Field(
        default_factory=dict,
        description="Extra librdkafka producer properties as a JSON object (e.g. SASL/TLS in production).",
    )
    retry_backoff_max_s: float = Field(
        5.0, gt=0, description="Upper bound of the back-off between replay attempts after a failure, seconds."
    )

    # -- Journal -------------------------------------------------------------
    journal_dir: Path = Field(
        Path("./var/logger-journal"),
        description="Directory of the on-disk journal (segment files + committed-offset checkpoint).",
    )
    segment_bytes: int = Field(
        64 * 1024 * 1024, ge=4096, description="Journal segment size before rolling to a new file, bytes."
    )
    journal_max_bytes: int = Field(
        1024 * 1024 * 1024,
        ge=0,
        description="Refuse batches (UNAVAILABLE; the client retries) while unsent journal data exceeds this, "
        "bytes; 0 = unbounded. Counted in events_rejected_total{reason=journal_full}, gauge journal_full.",
    )
    checkpoint_interval_ms: int = Field(
        200, ge=1, description="How often the committed Kafka offset is persisted, milliseconds."
    )
    max_event_bytes: int = Field(
        1024 * 1024,
        ge=64,
        description="Largest accepted serialized event, bytes; larger -> INVALID_ARGUMENT.",
    )
    flush_timeout_s: float = Field(
        10.0,
        ge=0,
        description="On shutdown, time to deliver the journal backlog before exiting, seconds "
        "(what is left is replayed at the next start).",
    )

    # Metrics: `metrics_port` / `metrics_host` come from ServerSettings (served by GrpcServer).
