"""Control-plane settings (env prefix PREDMESH_CONTROLPLANE_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from predmesh.common.settings import ServerSettings


class ControlPlaneSettings(ServerSettings):
    """Where the control plane listens (ADS and the admin API on separate gRPC ports) and its initial config.

    The mesh config comes from `config_path` (YAML or JSON, reloaded when the file
    changes) or, without a file, from the defaults built out of `gateway_endpoints`,
    `listener_port` and `otlp_collector`.
    """

    model_config = SettingsConfigDict(env_prefix="PREDMESH_CONTROLPLANE_")

    port: int = Field(18000, description="gRPC port of ADS (what Envoy connects to); 0 picks a free port.")
    admin_port: int = Field(
        18001,
        description="gRPC port of the admin API (Get/Set/PatchConfig, GetStatus), apart from ADS so that "
        "reaching Envoy's config stream does not allow changing it; 0 picks a free port.",
    )
    admin_allowed_clients: list[str] = Field(
        default_factory=lambda: ["operator"],
        description="With mTLS (tls_* files): certificate identities allowed to call the admin API.",
    )
    ads_allowed_clients: list[str] = Field(
        default_factory=lambda: ["envoy"],
        description="With mTLS (tls_* files): certificate identities allowed to open the ADS config stream "
        "(the edge Envoys' client certificate).",
    )
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
    edge_tls_cert_path: Path | None = Field(
        None,
        description="PEM certificate chain of the edge listener (e.g. tls.crt of a kubernetes.io/tls Secret); "
        "with `edge_tls_key_path` it turns edge TLS on (default config) and is served to Envoy over SDS, "
        "re-read when it changes (rotation without restart).",
    )
    edge_tls_key_path: Path | None = Field(None, description="PEM private key of the edge certificate (tls.key).")
    edge_tls_poll_s: float = Field(1.0, description="How often the edge certificate files are checked (seconds).")
    upstream_tls_cert_path: Path | None = Field(
        None,
        description="PEM certificate Envoy presents to the gateway (mutual TLS edge -> gateway; identity 'edge'); "
        "with the key and CA it turns on `mtls` for the default gateway cluster. Served over SDS, re-read on change.",
    )
    upstream_tls_key_path: Path | None = Field(None, description="PEM private key of `upstream_tls_cert_path`.")
    upstream_tls_ca_path: Path | None = Field(None, description="PEM CA Envoy verifies the gateway's certificate with.")
