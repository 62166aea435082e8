"""Settings shared by every service (each service subclasses with its own env prefix)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings


class ServerSettings(BaseSettings):
    """gRPC server settings common to every service.

    Subclasses set `model_config = SettingsConfigDict(env_prefix="PREDMESH_<SERVICE>_")`.
    """

    host: str = Field("127.0.0.1", description="Interface the gRPC server binds to.")
    port: int = Field(0, description="gRPC port; 0 picks a free port (the bound port is logged).")
    grace_s: float = Field(5.0, description="Seconds in-flight RPCs get to finish on shutdown (seconds).")
    drain_delay_s: float = Field(
        0.0,
        ge=0,
        description="On shutdown, seconds between reporting NOT_SERVING and closing the listener, so load "
        "balancers health-checking this server stop sending new calls first (seconds; 0 = close at once).",
    )
    max_concurrent_rpcs: int | None = Field(
        None, description="Upper bound on concurrent RPCs; further calls get RESOURCE_EXHAUSTED."
    )
    log_level: str = Field("INFO", description="Python logging level.")
    uvloop: bool = Field(True, description="Run the service's event loop on uvloop when it is installed.")

    # -- observability (every service) ----------------------------------------
    metrics_port: int | None = Field(
        None,
        description="Port of the Prometheus /metrics HTTP endpoint; unset = disabled, 0 = an ephemeral port (logged).",
    )
    metrics_host: str = Field("", description="Interface of the /metrics endpoint; empty = the gRPC `host`.")
    otlp_endpoint: str = Field(
        "",
        description="host:port of an OTLP/gRPC trace collector (plaintext unless `otlp_tls_ca_path` is set); "
        "empty = tracing off (no-op).",
        examples=["otel-collector.observability:4317"],
    )
    otlp_tls_ca_path: Path | None = Field(
        None, description="PEM CA of the OTLP collector's certificate: export over TLS, verified with it."
    )
    otlp_tls_cert_path: Path | None = Field(
        None, description="PEM client certificate presented to the collector (mutual TLS; needs otlp_tls_ca_path)."
    )
    otlp_tls_key_path: Path | None = Field(None, description="PEM private key of `otlp_tls_cert_path`.")
    trace_sample_ratio: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="Fraction of new traces sampled (0..1); a sampled/unsampled caller's decision is kept.",
    )
    service_name: str = Field(
        "", description="OpenTelemetry service.name; empty = derived from the env prefix (e.g. predmesh-gateway)."
    )

    # -- mutual TLS (predmesh.common.tls) ---------------------------------------
    tls_cert_path: Path | None = Field(
        None, description="PEM certificate chain of this service (mTLS; its first DNS SAN is the identity)."
    )
    tls_key_path: Path | None = Field(None, description="PEM private key of `tls_cert_path`.")
    tls_ca_path: Path | None = Field(None, description="PEM CA that signs every mesh certificate (trusted peers).")
    server_tls: bool = Field(
        True,
        description="With the three tls_* files set: serve with mTLS (client certificates required); "
        "false = the files are only used by this service's own channels.",
    )
    tls_poll_s: float = Field(5.0, description="How often the server re-checks its certificate files (seconds).")
    health_port: int | None = Field(
        None,
        description="Extra plaintext port serving only gRPC health (kubelet probes cannot present client "
        "certificates to an mTLS port); unset = none, 0 = an ephemeral port.",
    )
    allowed_clients: dict[str, list[str]] = Field(
        default_factory=dict,
        description="mTLS authorisation: method pattern ('/pkg.Service/Method', '/pkg.Service/*', '*') -> "
        "client identities (certificate SAN) allowed to call it ('*' = any mesh certificate). A method no "
        "pattern matches is refused (health excepted). Empty = any client with a mesh certificate.",
    )
