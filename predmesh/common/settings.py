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
