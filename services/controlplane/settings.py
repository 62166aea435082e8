"""Control-plane settings (env prefix PREDMESH_CONTROLPLANE_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from predmesh.common.settings import ServerSettings


class ControlPlaneSettings(ServerSettings):
    """Where the control plane listens (ADS + admin API on one gRPC port) and its initial config.

    The mesh config comes from `config_path` (YAML or JSON, reloaded when the file
    changes) or, without a file, from the defaults built out of `gateway_endpoints`,
    `listener_port` and `otlp_collector`.
    """

    model_config = SettingsConfigDict(env_prefix="PREDMESH_CONTROLPLANE_")

    port: int = Field(18000, description="gRPC port for ADS and the admin API; 0 picks a free port.")
    grace_s: float = Field(1.0, description="Seconds open ADS streams get on shutdown (seconds).")
    node_cluster: str = Field(
        "predmesh-edge",
        description="Envoy node cluster (--service-cluster / node.cluster) served the edge snapshot.",
    )
    config_path: Path | None = Field(None, description="Mesh config file (YAML/JSON); watched for changes.")
    config_poll_s: float = Field(
        1.0, description="How often the config file's mtime is checked (seconds); 0 = read once."
    )
    gateway_endpoints: str = Field(
        "127.0.0.1:50051", description="Comma-separated host:port of gateway replicas (default config only)."
    )
    listener_port: int = Field(10000, description="Edge listener port Envoy binds (default config only).")
    listener_host: str = Field(
        "0.0.0.0", description="Address the edge listener binds (default config only); 127.0.0.1 locally."
    )
    otlp_collector: str = Field(
        "",
        description="OTLP/gRPC collector host:port for Envoy traces; '' = `otlp_endpoint` (the control plane's own "
        "collector), and no tracing when both are empty.",
    )
    rollback_on_nack: bool = Field(
        True,
        description="When an Envoy rejects the current version, republish the last fully accepted config.",
    )
