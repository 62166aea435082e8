"""Gateway settings (env prefix PREDMESH_GATEWAY_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from predmesh.common.settings import ServerSettings


class GatewaySettings(ServerSettings):
    """Settings of the gateway service; every field can be set as PREDMESH_GATEWAY_<FIELD>."""

    model_config = SettingsConfigDict(env_prefix="PREDMESH_GATEWAY_")

    features_target: str = Field("127.0.0.1:50052", description="host:port of the features service.")
    inference_target: str = Field("127.0.0.1:50053", description="host:port of the inference orchestrator.")
    logger_target: str = Field("", description="host:port of the logger service; empty disables prediction logging.")
    default_deadline_ms: float = Field(1000.0, description="Deadline applied when the caller sets none (milliseconds).")
    features_timeout_ms: float = Field(
        150.0, description="Upper bound on the feature fetch, within the request deadline (milliseconds)."
    )
    inference_timeout_ms: float = Field(
        500.0, description="Upper bound on the inference call, within the request deadline (milliseconds)."
    )
    features_timeout_per_item_ms: float = Field(
        0.25,
        ge=0,
        description="Added to features_timeout_ms per entity beyond the first (PredictBatch) (milliseconds).",
    )
    inference_timeout_per_item_ms: float = Field(
        0.25,
        ge=0,
        description="Added to inference_timeout_ms per row beyond the first (PredictBatch) (milliseconds).",
    )
    model_cache_ttl_ms: float = Field(
        5000.0, description="How long model descriptions (features, entity type) are cached (milliseconds)."
    )
    max_batch_items: int = Field(1024, description="Most entities accepted in one PredictBatch call.")
    max_pending_async: int = Field(
        1000, description="Most PredictAsync requests in flight; more get RESOURCE_EXHAUSTED."
    )
    callback_timeout_ms: float = Field(2000.0, description="Deadline of one callback delivery attempt (milliseconds).")
    callback_attempts: int = Field(3, description="Delivery attempts per async result before it is given up.")
    routing_path: str = Field(
        "",
        description="Routing YAML (canary weights, shadows, fallbacks), watched live; empty = none.",
        examples=["/etc/predmesh/routing/routing.yaml"],
    )
    routing_poll_ms: float = Field(500.0, description="How often the routing file is checked (milliseconds).")
    breaker_failures: int = Field(5, description="Consecutive dependency failures that open a circuit breaker.")
    breaker_reset_ms: float = Field(
        2000.0, description="How long an open breaker refuses calls before one probe (milliseconds)."
    )
    min_inference_budget_ms: float = Field(
        5.0,
        description="Below this remaining budget the gateway answers from the fallback chain (milliseconds).",
    )
    max_shadow_inflight: int = Field(
        256, description="Most shadow jobs (request x shadow version) queued or running; more are skipped and counted."
    )
    coalesce_max_rows: int = Field(
        64,
        ge=1,
        description="Most rows in one coalesced features/inference call; concurrent requests for the same "
        "model and version share a call up to this size (1 disables coalescing).",
    )
    coalesce_max_wait_ms: float = Field(
        1.0,
        ge=0,
        description="Longest a request waits to join a batch while another batch of its model is in flight; "
        "an idle path sends at once (milliseconds).",
    )
    shadow_max_wait_ms: float = Field(
        5.0, ge=0, description="How long shadow rows are gathered into one batch before scoring (milliseconds)."
    )
    log_features_sample: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Fraction of prediction log records (0..1) that carry the scored feature values, "
        "for feature drift monitoring (services/monitor).",
    )
    logger_buffer: int = Field(10000, description="Prediction records buffered for the logger before drops.")
    api_keys: dict[str, list[str]] = Field(
        default_factory=dict,
        description=(
            "API key -> models it may call ('*' = all). Empty disables auth. "
            'As env: PREDMESH_GATEWAY_API_KEYS=\'{"key1": ["fraud"], "admin": ["*"]}\'.'
        ),
    )
