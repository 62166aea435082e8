"""Settings shared by every service (each service subclasses with its own env prefix)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class ServerSettings(BaseSettings):
    """gRPC server settings common to every service.

    Subclasses set `model_config = SettingsConfigDict(env_prefix="PREDMESH_<SERVICE>_")`.
    """

    host: str = Field("127.0.0.1", description="Interface the gRPC server binds to.")
    port: int = Field(0, description="gRPC port; 0 picks a free port (the bound port is logged).")
    grace_s: float = Field(5.0, description="Seconds in-flight RPCs get to finish on shutdown (seconds).")
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
        description="host:port of an OTLP/gRPC trace collector (plaintext); empty = tracing off (no-op).",
        examples=["otel-collector.observability:4317"],
    )
    trace_sample_ratio: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="Fraction of new traces sampled (0..1); a sampled/unsampled caller's decision is kept.",
    )
    service_name: str = Field(
        "", description="OpenTelemetry service.name; empty = derived from the env prefix (e.g. predmesh-gateway)."
    )
