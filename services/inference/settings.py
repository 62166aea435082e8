"""Settings of the inference orchestrator (env prefix `PREDMESH_INFERENCE_`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from predmesh.common.settings import ServerSettings


class InferenceSettings(ServerSettings):
    """Inference orchestrator settings; every field is read from `PREDMESH_INFERENCE_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="PREDMESH_INFERENCE_")

    model_repository: Path = Field(
        Path("models"),
        description="Model repository dir (path); Triton layout <name>/<version>/model.onnx + model.yaml.",
    )
    ensure_demo_models: bool = Field(
        False,
        description="Train demo models into model_repository at start when missing (needs the train extra).",
    )
    ort_intra_op_threads: int = Field(
        1,
        ge=0,
        description="ONNX Runtime intra-op threads per session (threads; 0 = ORT default, all cores).",
    )
    ort_inter_op_threads: int = Field(
        1, ge=0, description="ONNX Runtime inter-op threads per session (threads; 0 = ORT default)."
    )
    executor_threads: int = Field(
        2, ge=1, description="Worker threads that run blocking model executions off the event loop (threads)."
    )
    max_rows: int = Field(1024, ge=1, description="Most rows one Infer request may carry (rows).")
    offload_rows: int = Field(
        256,
        ge=0,
        description="Requests with more rows than this are pre/post-processed in a worker thread (rows).",
    )
