"""Sink settings (env prefix `PREDMESH_SINK_`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from predmesh.common.settings import ServerSettings


class SinkSettings(ServerSettings):
    """Analytics sink: the prediction log, shadow predictions and outcomes into ClickHouse
    (embedded chdb locally, a ClickHouse server in Kubernetes), the AnalyticsService query
    API, and the rollout controller over the routing file."""

    model_config = SettingsConfigDict(env_prefix="PREDMESH_SINK_")

    allowed_clients: dict[str, list[str]] = Field(
        default_factory=lambda: {"/predmesh.v1.AnalyticsService/*": ["operator"]},
        description="mTLS (tls_* files, server_tls): who may call which method; operators (CLI, dashboards).",
    )
    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers (host:port list).")
    topics: list[str] = Field(
        default_factory=lambda: ["predictions", "shadow-predictions", "outcomes"],
        description="Topics consumed (JSON list): the prediction log, shadow predictions, outcomes.",
    )
    webhook_topic: str = Field(
        "retrain-webhooks",
        description="Topic of the drift monitor's retraining-webhook call records (RetrainWebhookRecord) stored in "
        '`retrain_webhooks`; "" = not consumed.',
    )
    group_id: str = Field("predmesh-sink", description="Kafka consumer group of the sink fleet.")
    from_beginning: bool = Field(True, description="With no committed offset, start at the oldest record.")
    kafka_extra: dict[str, str] = Field(
        default_factory=dict, description="Extra librdkafka consumer properties as a JSON object (SASL/TLS...)."
    )
    backend: Literal["chdb", "clickhouse"] = Field(
        "chdb",
        description="`chdb`: ClickHouse in process under `chdb_path`; `clickhouse`: a server at `clickhouse_url`.",
    )
    chdb_path: Path = Field(Path(".predmesh/analytics"), description="Directory of the embedded store's state.")
    clickhouse_url: str = Field(
        "http://127.0.0.1:8123", description="ClickHouse server URL (http(s)://host:port) for backend `clickhouse`."
    )
    clickhouse_user: str = Field("default", description="ClickHouse user.")
    clickhouse_password: SecretStr = Field(SecretStr(""), description="ClickHouse password (from a Secret).")
    database: str = Field("predmesh", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Database of the tables.")
    batch_max_rows: int = Field(5000, ge=1, description="Rows buffered before an insert.")
    batch_max_wait_ms: float = Field(
        500.0, gt=0, description="Longest a buffered row waits for its insert (milliseconds)."
    )
    query_max_rows: int = Field(10_000, ge=1, description="Most rows one AnalyticsService.Query returns.")
    routing_path: Path | None = Field(
        None,
        description="Routing file whose `rollout` blocks the controller runs (routing_backend `file`); "
        "unset = no rollout controller.",
    )
    routing_backend: Literal["file", "configmap"] = Field(
        "file",
        description="Where the rollout controller reads and writes the routing table: `file` (routing_path) or "
        "`configmap` (routing_configmap through the Kubernetes API, in a cluster).",
    )
    routing_configmap: str = Field("", description="Name of the routing ConfigMap (routing_backend `configmap`).")
    routing_configmap_key: str = Field("routing.yaml", description="Key of the routing YAML in the ConfigMap.")
    kube_namespace: str = Field(
        "", description='Namespace of the ConfigMap; "" = the pod\'s (service account namespace file).'
    )
    kube_api_url: str = Field(
        "", description='Kubernetes API server (https://host:port); "" = in-cluster (KUBERNETES_SERVICE_HOST/PORT).'
    )
    kube_service_account_dir: Path = Field(
        Path("/var/run/secrets/kubernetes.io/serviceaccount"),
        description="Directory of the service account's token, ca.crt and namespace files.",
    )
    kube_timeout_s: float = Field(10.0, gt=0, description="Timeout of one Kubernetes API request (seconds).")
    otlp_port: int | None = Field(
        None,
        description="Port of a local OTLP/gRPC trace receiver (plaintext, spans into the `spans` table); "
        "unset = none, 0 = an ephemeral port. For `predmesh up`; clusters use their own collector.",
    )
    rollout_interval_s: float = Field(5.0, gt=0, description="How often running rollouts are evaluated (seconds).")
    rollout_evidence: Literal["analytics", "prometheus"] = Field(
        "analytics",
        description="Where the rollout controller reads canary vs stable request counts, p99 latency and "
        "error+degraded rate: `analytics` (this store) or `prometheus` (prometheus_url: the monitor's per-arm "
        "series); outcomes and AUC always come from the store.",
    )
    prometheus_url: str = Field(
        "", description="Prometheus-compatible query API, http(s)://host:port[/prefix] (rollout_evidence prometheus)."
    )
    prometheus_timeout_s: float = Field(5.0, gt=0, description="Timeout of one Prometheus query (seconds).")
    prometheus_auth_header: SecretStr = Field(
        SecretStr(""), description='Authorization header value for Prometheus, e.g. "Bearer TOKEN" (from a Secret).'
    )
    prometheus_ca_file: str | None = Field(None, description="CA bundle for an https Prometheus (default: system).")
    prometheus_selector: str = Field(
        "",
        description='Extra PromQL label matchers on the monitor\'s series, e.g. namespace="ml" (several releases '
        "sharing one Prometheus).",
    )
