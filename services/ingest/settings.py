"""Settings of the ingestion service (env prefix `PREDMESH_INGEST_`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from predmesh.common.redistls import RedisTlsSettings
from predmesh.common.settings import ServerSettings


class IngestSettings(ServerSettings, RedisTlsSettings):
    """Streaming ingestion: every field can be set as PREDMESH_INGEST_<FIELD>.

    The gRPC port serves only gRPC health; the numbers are on `/metrics` (`metrics_port`).
    """

    model_config = SettingsConfigDict(env_prefix="PREDMESH_INGEST_")

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers (host:port list).")
    topic: str = Field("feature-events", description="Topic of FeatureEvent records to ingest.")
    dlq_topic: str = Field(
        "feature-events-dlq", description="Dead-letter topic: rejected records, unchanged, with the reason in headers."
    )
    group_id: str = Field("predmesh-ingest", description="Kafka consumer group (one group per ingestion fleet).")
    from_beginning: bool = Field(
        True, description="With no committed offset, start at the oldest record (else only new ones)."
    )
    kafka_extra: dict[str, str] = Field(
        default_factory=dict, description="Extra librdkafka consumer properties as a JSON object (SASL/TLS...)."
    )
    producer_extra: dict[str, str] = Field(
        default_factory=dict, description="Extra librdkafka properties of the dead-letter producer (SASL/TLS...)."
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis URL holding the feature hashes; rediss:// = TLS (redis_tls_*); redis+cluster://seed:port "
        "(or rediss+cluster://) = a Redis Cluster (one pipeline per master).",
    )
    redis_cluster: bool = Field(
        False, description="Treat `redis_url` as a seed node of a Redis Cluster (same as a redis+cluster:// URL)."
    )
    redis_timeout_ms: float = Field(
        2000.0, gt=0, description="Timeout of connecting to Redis and of each batch write (milliseconds)."
    )
    invalidate_cache: bool = Field(
        True,
        description="Invalidate the gateways' prediction cache for every entity written (a generation INCR and a "
        "PUBLISH in the same Redis round trip).",
    )
    registry_path: Path = Field(description="Feature registry YAML file (the one the features service serves).")
    batch_max_events: int = Field(500, gt=0, description="Most records consumed, written and committed at once.")
    poll_timeout_ms: float = Field(100.0, gt=0, description="Longest wait for a batch to fill (milliseconds).")
    retry_backoff_ms: float = Field(
        200.0, gt=0, description="Wait before retrying a failed Redis write or dead-letter flush (milliseconds)."
    )
    max_entity_id_length: int = Field(256, gt=0, description="Longest accepted entity id (characters).")
    max_future_s: float = Field(
        300.0, ge=0, description="Reject events whose event time is further ahead of the wall clock (seconds)."
    )
    lag_interval_s: float = Field(5.0, gt=0, description="How often the consumer-lag gauge is refreshed (seconds).")
