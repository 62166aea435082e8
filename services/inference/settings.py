"""Settings of the inference orchestrator (env prefix `PREDMESH_INFERENCE_`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from predmesh.common.settings import ServerSettings


class InferenceSettings(ServerSettings):
    """Inference orchestrator settings; every field is read from `PREDMESH_INFERENCE_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="PREDMESH_INFERENCE_")
    allowed_clients: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "/predmesh.v1.InferenceService/ReloadModels": ["operator"],
            "/predmesh.v1.InferenceService/*": ["gateway", "operator"],
        },
        description="mTLS: who may call which method (see ServerSettings); ReloadModels is for operators only.",
    )
    triton_tls: bool = Field(
        False, description="Call Triton over mutual TLS with this service's certificate (--grpc-use-ssl-mutual)."
    )
    triton_admin_key: SecretStr = Field(
        SecretStr(""),
        description="Value of the `triton-grpc-protocol-admin-key` header Triton requires on its restricted protocols "
        "(--grpc-restricted-protocol: model repository/config, shared memory, trace, logging); sent on the "
        "orchestrator's model-control calls. Empty = no header (Triton without restrictions).",
    )

    model_repository: Path = Field(
        Path("models"),
        description="Model repository dir (path); Triton layout <name>/<version>/model.onnx + model.yaml.",
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

    # -- hot reload (predmesh/models/lifecycle.py) -----------------------------------------
    poll_interval_ms: float = Field(
        2000.0,
        ge=0,
        description="Poll the model repository this often and hot-swap changed versions (ms; 0 = off, "
        "ReloadModels RPC only).",
    )
    drain_ms: float = Field(
        5000.0,
        ge=0,
        description="How long a removed/replaced version keeps serving requests pinned to it before it "
        "is unloaded (after its in-flight requests finish) (ms).",
    )
    warmup_runs: int = Field(2, ge=0, description="Dummy inferences on a newly loaded version before it is served.")
    warmup_rows: int = Field(4, ge=1, description="Rows per warm-up inference (rows).")

    # -- execution backends (see backends/select.py) ----------------------------
    triton_target: str | None = Field(
        None, description="Triton KServe v2 gRPC address host:port; gpu models (and backend: triton) run there."
    )
    triton_batches: bool = Field(
        True,
        description="Triton's model configs enable dynamic_batching, so the orchestrator sends directly "
        "(no double batching); false: batch in front of Triton too.",
    )
    triton_model_control: bool = Field(
        False,
        description="Triton runs with --model-control-mode=explicit on the orchestrator's repository: the "
        "orchestrator asks it to (re)load a model when a version appears or changes, and to drop a removed "
        "version only after draining it (hot swap on Triton).",
    )
    ort_workers: str = Field(
        "",
        description="Comma-separated host:port list of ORT worker processes (KServe v2 gRPC); "
        "cpu models run there when set.",
    )
    cpu_backend: Literal["auto", "local", "ort_worker", "triton"] = Field(
        "auto",
        description="Where models without a backend/device (or device: cpu) run; auto = ort_worker "
        "when ort_workers is set, else local.",
    )
    worker_balance: Literal["least_outstanding", "round_robin"] = Field(
        "least_outstanding", description="How calls are spread over the ORT worker pool."
    )
    backend_timeout_ms: float = Field(
        2000.0, gt=0, description="Deadline of a remote backend call when the request has none (ms)."
    )
    backend_load_timeout_ms: float = Field(
        15000.0, gt=0, description="How long start() waits for a remote backend to report a model ready (ms)."
    )
    triton_config_name: str = Field(
        "",
        description="Model config Triton reads (--model-config-name): '' = <model>/config.pbtxt, else "
        "<model>/configs/<name>.pbtxt (cpu_local locally). A bounded model pool sends it with the versions "
        "to load (RepositoryModelLoad config override).",
    )
    # -- model pools (predmesh/models/pool.py) -----------------------------------------
    pool_max_bytes: int = Field(
        0,
        ge=0,
        description="Memory budget of each backend's model pool (bytes of model.onnx per loaded version; "
        "0 = no byte limit). With a budget or pool_max_models, versions not marked eager load on first "
        "use and the least recently used idle ones are evicted.",
    )
    pool_max_models: int = Field(
        0, ge=0, description="Most model versions each backend's pool holds loaded (versions; 0 = no limit)."
    )
    pool_load_timeout_ms: float = Field(
        10000.0,
        gt=0,
        description="How long one pool load may wait for room while every loaded version is in use (ms); "
        "then RESOURCE_EXHAUSTED (the gateway answers from its fallback).",
    )
    routing_path: Path | None = Field(
        None,
        description="The gateway's routing table (path, YAML): its stable/canary arms (or explicit eager: "
        "lists) are loaded at start and never evicted by a bounded pool.",
    )
    pool_eager: str = Field(
        "", description="Extra eager versions, comma-separated name:version (always loaded, never evicted)."
    )

    worker_placement: Literal["replicate", "hash"] = Field(
        "replicate",
        description="With a bounded pool and several ORT workers: replicate = every worker loads what the pool "
        "loads; hash = each cold (non-eager) version loads only on its consistent-hash owner(s) and is served "
        "there (core/placement.py), eager versions on every worker.",
    )
    worker_placement_copies: int = Field(
        1, ge=1, description="Owners per cold version with worker_placement=hash (workers)."
    )

    # -- dynamic micro-batching (core/batcher.py) -------------------------------
    batch_local: bool = Field(False, description="Micro-batch in front of the in-process ONNX Runtime backend.")
    batch_ort_workers: bool = Field(True, description="Micro-batch in front of the ORT worker pool.")
    batch_max_rows: int = Field(64, ge=1, description="Most rows per micro-batch (rows).")
    batch_max_wait_ms: float = Field(
        1.0, ge=0, description="Longest a batch waits for more requests after its first one (ms)."
    )
    batch_max_queue: int = Field(
        1024, ge=1, description="Requests queued per model version; more: RESOURCE_EXHAUSTED (requests)."
    )
    batch_max_inflight: int = Field(2, ge=1, description="Batches of one model version executing at once (batches).")

    @property
    def pool_bounded(self) -> bool:
        return self.pool_max_bytes > 0 or self.pool_max_models > 0

    @property
    def ort_worker_targets(self) -> list[str]:
        return [t.strip() for t in self.ort_workers.split(",") if t.strip()]
