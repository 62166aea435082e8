"""Settings of an ONNX Runtime worker (env prefix `PREDMESH_ORTWORKER_`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from predmesh.common.settings import ServerSettings


class OrtWorkerSettings(ServerSettings):
    """ORT worker settings; every field is read from `PREDMESH_ORTWORKER_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="PREDMESH_ORTWORKER_")
    allowed_clients: dict[str, list[str]] = Field(
        default_factory=lambda: {"/inference.GRPCInferenceService/*": ["inference", "operator"]},
        description="mTLS: who may call which method (see ServerSettings); only the orchestrator infers.",
    )

    model_repository: Path = Field(
        Path("models"), description="Model repository dir (path), the same layout the orchestrator reads."
    )
    models: str = Field(
        "",
        description="Comma-separated model names to serve (empty = every model in the repository).",
    )
    ort_intra_op_threads: int = Field(
        1, ge=0, description="ONNX Runtime intra-op threads per session (threads; 0 = ORT default)."
    )
    ort_inter_op_threads: int = Field(
        1, ge=0, description="ONNX Runtime inter-op threads per session (threads; 0 = ORT default)."
    )
    executor_threads: int = Field(
        2, ge=1, description="Threads running blocking session runs off the event loop (threads)."
    )
    max_rows: int = Field(
        8192, ge=1, description="Most rows one ModelInfer request may carry (rows; more: INVALID_ARGUMENT)."
    )
    poll_interval_ms: float = Field(
        1000.0, ge=0, description="Poll the repository this often and hot-swap changed versions (ms; 0 = off)."
    )
    drain_ms: float = Field(
        10000.0,
        ge=0,
        description="How long a removed/replaced version stays servable before it is unloaded (ms); keep it "
        "above the orchestrator's drain_ms plus its poll interval so the orchestrator drains first.",
    )
    warmup_runs: int = Field(2, ge=0, description="Dummy inferences on a newly loaded version before it is served.")
    model_control: Literal["none", "explicit"] = Field(
        "none",
        description="none: load every version at start; explicit: load nothing at start, the orchestrator's "
        "model pool loads/unloads versions with RepositoryModelLoad/Unload (like Triton's explicit mode).",
    )
    pool_max_bytes: int = Field(
        0,
        ge=0,
        description="Worker-local model pool budget (bytes of model.onnx per loaded version; 0 = no limit). With "
        "this or pool_max_models (and model_control none) versions load on their first ModelInfer and the least "
        "recently used idle ones are evicted: each worker bounds its own memory, also behind a load-balanced "
        "Service. Exclusive with model_control explicit.",
    )
    pool_max_models: int = Field(
        0, ge=0, description="Worker-local pool: most versions loaded (versions; 0 = no limit)."
    )
    pool_load_timeout_ms: float = Field(
        10000.0, gt=0, description="How long a worker-local pool load waits for room while all is in use (ms)."
    )
    pool_eager: str = Field("", description="Worker-local pool: versions always loaded, comma-separated name:version.")
    routing_path: Path | None = Field(
        None, description="Routing table (path): its stable/canary arms are the worker-local pool's eager versions."
    )

    @property
    def pool_bounded(self) -> bool:
        return self.pool_max_bytes > 0 or self.pool_max_models > 0
