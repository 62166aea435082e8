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
    webhook_topic: str = Field(
        "retrain-webhooks",
        description="Topic each retraining-webhook call is recorded to (RetrainWebhookRecord; the analytics sink "
        'stores it); "" = not recorded.',
    )
    producer_extra: dict[str, str] = Field(
        default_factory=dict,
        description="Extra librdkafka producer properties of the webhook records as a JSON object (SASL/TLS...).",
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
    retrain_webhook_url: str = Field(
        "",
        description="Retraining webhook: POSTed a JSON drift event when a model version drifts (PSI > psi_alert); "
        'http(s)://host[:port]/path, "" = none. Checked like the gateway\'s callbacks (SSRF policy).',
    )
    retrain_webhook_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts the webhook may reach (JSON list: names, *.suffix, IPs, CIDRs); [] = the URL's own host. "
        "Internal addresses (private, loopback, link-local) need an IP/CIDR entry that contains them.",
    )
    retrain_webhook_ports: str = Field("443,1024-65535", description="Ports the webhook may use (e.g. '443,8080').")
    retrain_webhook_blocked_networks: list[str] = Field(
        default_factory=list, description="Extra refused CIDRs (cluster pod/service ranges), JSON list."
    )
    retrain_webhook_ca_file: str | None = Field(None, description="CA bundle for https webhooks (default: system).")
    retrain_webhook_timeout_ms: float = Field(5000.0, gt=0, description="Timeout of one attempt (milliseconds).")
    retrain_webhook_backoff_initial_ms: float = Field(
        500.0, gt=0, description="First back-off cap (milliseconds); doubles per attempt, full jitter."
    )
    retrain_webhook_backoff_max_s: float = Field(60.0, gt=0, description="Largest back-off between attempts (seconds).")
    retrain_webhook_horizon_s: float = Field(
        3600.0, gt=0, description="Retries stop once the waits would pass this (seconds); then counted as failed."
    )
    retrain_webhook_cooldown_s: float = Field(
        3600.0, ge=0, description="At most one webhook call per model version in this time (seconds)."
    )
