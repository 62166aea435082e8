"""Monitor settings (env prefix `PREDMESH_MONITOR_`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from predmesh.common.settings import ServerSettings


class MonitorSettings(ServerSettings):
    """Drift monitor: consumes the prediction log, exports window statistics as Prometheus gauges.

    The gRPC port serves only gRPC health; the numbers are on `/metrics` (`metrics_port`).
    """

    model_config = SettingsConfigDict(env_prefix="PREDMESH_MONITOR_")

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers (host:port list).")
    topic: str = Field("predictions", description="Topic of PredictionEvent records to monitor.")
    group_id: str = Field("predmesh-monitor", description="Kafka consumer group (one group per monitor fleet).")
    from_beginning: bool = Field(
        False, description="With no committed offset, start at the oldest record (else only new ones)."
    )
    kafka_extra: dict[str, str] = Field(
        default_factory=dict, description="Extra librdkafka consumer properties as a JSON object (SASL/TLS...)."
    )
    model_repository: Path | None = Field(
        None, description="Model repository holding <name>/<version>/reference.json; unset = no drift (PSI)."
    )
    window_s: float = Field(300.0, gt=0, description="Sliding window length (seconds).")
    min_events: int = Field(
        100, ge=1, description="Fewest events (or feature-sampled events) in a window before a PSI is reported."
    )
    max_events: int = Field(100_000, ge=1, description="Most events kept per model version (oldest dropped).")
    evaluate_interval_s: float = Field(5.0, gt=0, description="How often the gauges are recomputed (seconds).")
    psi_alert: float = Field(0.25, gt=0, description="PSI above which `predmesh_monitor_drift` is 1.")
    reference_ttl_s: float = Field(60.0, gt=0, description="How long a loaded reference is cached (seconds).")
