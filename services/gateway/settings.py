"""Gateway settings (env prefix PREDMESH_GATEWAY_)."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from predmesh.common.redistls import RedisTlsSettings
from predmesh.common.settings import ServerSettings


class GatewaySettings(ServerSettings, RedisTlsSettings):
    """Settings of the gateway service; every field can be set as PREDMESH_GATEWAY_<FIELD>."""

    model_config = SettingsConfigDict(env_prefix="PREDMESH_GATEWAY_")

    def redis_tls_urls(self) -> dict[str, str]:
        """`redis_tls_*` (rediss:// CA and client certificate) apply to every Redis of the gateway:
        the prediction cache's shared level, the async results and the batch jobs."""
        urls = {
            "cache_redis_url": self.cache_redis_url,
            "async_redis_url": self.async_redis_url,
            "batch_redis_url": self.batch_redis_url,
        }
        return {name: url for name, url in urls.items() if url}

    allowed_clients: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "/predmesh.v1.PredictionService/*": ["envoy", "operator"],
            "/predmesh.v1.OutcomeService/*": ["envoy", "operator"],
            "/predmesh.v1.BatchJobService/*": ["envoy", "operator"],
            "/grpc.reflection.v1alpha.ServerReflection/*": ["envoy", "operator"],
        },
        description="mTLS (tls_* files, server_tls): who may call which method; the edge Envoy and operators.",
    )

    reflection: bool = Field(
        True, description="Serve gRPC server reflection (the public API's schema, for grpcurl and other tools)."
    )
    health_window_s: float = Field(
        60.0, gt=0, description="Window of GetModelHealth's latency and degraded-ratio figures (seconds)."
    )
    features_target: str = Field(
        "127.0.0.1:50052",
        description="gRPC target of the features service: host:port, dns:///headless-service:port or"
        " ipv4:a:p,b:q (replicas, balanced round_robin; a call failing UNAVAILABLE is re-sent to another).",
    )
    inference_target: str = Field(
        "127.0.0.1:50053", description="gRPC target of the inference orchestrator (forms as features_target)."
    )
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
    callback_hosts: list[str] = Field(
        default_factory=list,
        description="PredictAsync callback hosts every key may use, added to each key's own `callback_hosts` "
        "(patterns: 'hooks.example.com', '*.example.com', an IP or CIDR; an internal address is only reachable "
        "through an IP/CIDR entry). Empty, and no per-key list = callbacks refused.",
    )
    async_kafka_bootstrap: str = Field(
        "",
        description="Kafka bootstrap servers of the durable async queue; empty = PredictAsync runs in memory "
        "(lost on restart, no polling). Needs `async_redis_url` too.",
        examples=["kafka-0.kafka:9092"],
    )
    cache_max_entries: int = Field(
        100_000, gt=0, description="Entries of the in-process prediction cache level (LRU) of this replica."
    )
    cache_redis_url: str = Field(
        "",
        description="Redis of the prediction cache level shared by all replicas, and of its per-entity invalidations "
        "(the Redis the ingestion service writes); empty = in-process level only (ingested writes reach it only "
        "through the TTL). `redis+cluster://host:port` (or `rediss+cluster://`) names a seed node of a Redis "
        "Cluster. The cache is used only for models whose routing has a `cache` policy.",
    )
    cache_timeout_ms: float = Field(
        20.0, gt=0, description="Timeout of one shared prediction cache lookup or store (milliseconds)."
    )
    async_redis_url: str = Field("", description="Redis of async results and callback schedules (shared by replicas).")
    async_requests_topic: str = Field("async-requests", description="Topic of accepted PredictAsync requests.")
    async_results_topic: str = Field("async-results", description="Topic every async result is published to.")
    async_dead_letter_topic: str = Field(
        "async-dead-letters", description="Topic of results whose callback failed until the retry horizon."
    )
    async_consumer_group: str = Field(
        "predmesh-gateway-async", description="Consumer group of the async workers (every gateway replica)."
    )
    async_kafka_extra: dict[str, str] = Field(
        default_factory=dict,
        description="Extra librdkafka consumer properties of the async worker (dev: short session timeouts).",
    )
    async_worker: bool = Field(
        True, description="Run the async-worker consumer and the callback sender in this replica."
    )
    async_consume_batch: int = Field(64, ge=1, description="Most async requests scored per consumed batch.")
    async_result_ttl_s: float = Field(
        86400.0, gt=0, description="How long async results can be polled (seconds); NOT_FOUND after."
    )
    batch_allowed_roots: list[str] = Field(
        default_factory=list,
        description="Where batch jobs (BatchJobService) may read and write: absolute local directories and URL "
        "prefixes (s3://bucket/scoring/, memory://batch/). Empty = no file at all (every submission is "
        "PERMISSION_DENIED). Batch jobs need `batch_redis_url` or `async_redis_url` too (their state and checkpoints).",
        examples=[["/data/batch", "s3://scoring-bucket/jobs/"]],
    )
    batch_redis_url: str = Field(
        "",
        description="Redis of batch job state (leases, checkpoints, counters): redis://host:port, or a Redis "
        "Cluster seed node redis+cluster://host:port (a job's keys share one slot); empty = `async_redis_url`.",
    )
    batch_worker: bool = Field(
        True, description="Score chunks of batch jobs on this replica (every replica shares them)."
    )
    batch_workers: int = Field(1, ge=1, le=64, description="Chunks this replica scores at once.")
    batch_chunk_rows: int = Field(4096, ge=1, description="Rows per checkpointed chunk when a job names none.")
    batch_max_chunk_rows: int = Field(50_000, ge=1, description="Largest chunk a job may ask for (rows).")
    batch_max_rows: int = Field(50_000_000, ge=1, description="Largest input a job may have (rows).")
    batch_items_per_call: int = Field(
        1024,
        ge=1,
        description="Most rows per PredictBatch-path call while scoring a chunk (at most max_batch_items); with "
        "`batch_pace` the adaptive pace chooses the size below this.",
    )
    batch_pace: bool = Field(
        True,
        description="Adaptive pace of background work (batch job calls, durable async requests): AIMD on the rows "
        "per batch call and a pause before each background call, driven by this replica's real-time latency with "
        "and without background work in flight (services/gateway/README.md). False = fixed `batch_items_per_call` "
        "and `batch_duty_cycle`.",
    )
    batch_pace_min_items: int = Field(8, ge=1, description="Fewest rows per batch-job call the pace goes down to.")
    batch_pace_start_items: int = Field(64, ge=1, description="Rows per batch-job call the pace starts from.")
    batch_pace_increase_items: int = Field(
        16, ge=1, description="Rows per call the pace adds after each real-time window within tolerance."
    )
    batch_pace_latency_tolerance: float = Field(
        1.15,
        gt=1,
        description="Ratio: a window of real-time requests whose p90 latency exceeds this multiple of the p90 "
        "without background work makes the pace back off (halve the rows, then pause longer).",
    )
    batch_pace_verdict_requests: int = Field(
        64, ge=4, description="Real-time requests per pace verdict (a clearly bad window is judged earlier)."
    )
    batch_pace_latency_floor_ms: float = Field(
        1.0, ge=0, description="The real-time baseline is taken as at least this (milliseconds)."
    )
    batch_pace_max_pause_ms: float = Field(
        1000.0,
        gt=0,
        description="Longest pause before a background call (milliseconds); at this pause and still too slow, "
        "new batch/async-lane requests are refused (RESOURCE_EXHAUSTED, retry hint).",
    )
    batch_pace_max_call_ms: float = Field(
        50.0,
        gt=0,
        description="A batch-job call carries at most the rows that last about this long at the measured time per "
        "row (milliseconds): the longest a real-time request waits behind one.",
    )
    batch_pace_idle_max_call_ms: float = Field(
        200.0,
        gt=0,
        description="The same bound while no real-time request is seen (milliseconds): larger calls score faster, "
        "and the first real-time request after the gap waits behind one call at most this long.",
    )
    batch_pace_idle_ms: float = Field(
        1000.0, gt=0, description="No real-time request for this long: background work speeds up (milliseconds)."
    )
    batch_yield_max_ms: float = Field(
        50.0,
        ge=0,
        description="Before each batch call, wait up to this long for a moment with no real-time request in "
        "flight on this replica (milliseconds; 0 = do not wait).",
    )
    batch_duty_cycle: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Share of wall time a batch worker spends in calls (1 = full speed; 0.5 = pause as long as "
        "each call took).",
    )
    batch_call_timeout_ms: float = Field(
        30000.0, gt=0, description="Deadline of one such call, retries aside (milliseconds)."
    )
    batch_lease_ms: float = Field(
        15000.0,
        gt=0,
        description="A replica's lease on a chunk, renewed every third of it while scoring; after it lapses "
        "(the replica died) another replica takes the chunk (milliseconds).",
    )
    batch_poll_ms: float = Field(500.0, gt=0, description="How often an idle replica looks for chunks (milliseconds).")
    batch_job_ttl_s: float = Field(
        7 * 86400.0, gt=0, description="How long a job's status stays queryable after submission or end (seconds)."
    )
    async_claim_lease_ms: float = Field(
        10000.0,
        gt=0,
        description="A scorer's exclusive claim on a request id; after it lapses (the scorer died) another "
        "replica scores it (milliseconds).",
    )
    async_enqueue_timeout_ms: float = Field(
        10000.0, gt=0, description="Longest PredictAsync waits for its request to be durable (milliseconds)."
    )
    callback_backoff_base_ms: float = Field(
        500.0, gt=0, description="First retry pause of a failed callback, doubled per attempt (milliseconds)."
    )
    callback_backoff_max_ms: float = Field(
        300000.0, gt=0, description="Cap of the callback retry pause before jitter (milliseconds)."
    )
    callback_horizon_s: float = Field(
        3600.0, gt=0, description="Callbacks are retried this long after the first attempt, then dead-lettered (s)."
    )
    callback_lease_ms: float = Field(
        10000.0,
        gt=0,
        description="A claimed callback returns to the schedule after this if its sender died (milliseconds).",
    )
    callback_poll_ms: float = Field(50.0, gt=0, description="Idle wait between looks at the callback schedule (ms).")
    max_inflight: int = Field(
        0,
        ge=0,
        description="Priority-lane admission: most requests in flight; batch work is refused above "
        "`batch_lane_share` of it, async above `async_lane_share`, real-time only above it. 0 = no limit.",
    )
    async_lane_share: float = Field(0.75, gt=0, le=1, description="Share of max_inflight open to async work.")
    batch_lane_share: float = Field(0.5, gt=0, le=1, description="Share of max_inflight open to batch work.")
    overload_retry_after_ms: int = Field(
        200, ge=0, description="Retry hint given with lane refusals (RESOURCE_EXHAUSTED) (milliseconds)."
    )
    callback_ports: str = Field("443,1024-65535", description="Ports a callback target may use (ranges).")
    callback_blocked_networks: list[str] = Field(
        default_factory=list,
        description="More CIDRs refused as callback addresses (cluster pod/service ranges), on top of loopback, "
        "link-local, private, shared, multicast and reserved ranges.",
        examples=[["10.96.0.0/12"]],
    )
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
    coalesce_max_inflight: int = Field(
        2,
        ge=0,
        description="Most coalesced batches of one model and version in flight at once; while that many are "
        "out, new requests wait for one to return and leave together, so batches grow with load (0: no bound).",
    )
    shadow_max_wait_ms: float = Field(
        50.0,
        ge=0,
        description="How long shadow rows are gathered into one batch before scoring (milliseconds). Nobody "
        "waits for a shadow: a longer window only means fewer, larger shadow Infer calls.",
    )
    log_features_sample: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Fraction of prediction log records (0..1) that carry the scored feature values, "
        "for feature drift monitoring (services/monitor).",
    )
    logger_buffer: int = Field(10000, description="Prediction records buffered for the logger before drops.")
    logger_max_wait_ms: float = Field(
        50.0,
        ge=0,
        description="Longest a prediction record waits in the gateway to share one Publish batch with later ones "
        "(milliseconds; a full batch of 500 leaves at once; 0 = each write goes out at once). Off the request "
        "path: it only delays when the record reaches the logger's journal.",
    )
    api_keys: dict[str, list[str] | dict[str, Any]] = Field(
        default_factory=dict,
        description=(
            "API key (or 'sha256:<hex digest>') -> models it may call ('*' = all), or -> {models, rate_per_s, "
            "burst, callback_hosts, priority, name} (`api_keys_path` format); merged with `api_keys_path`. "
            'As env: PREDMESH_GATEWAY_API_KEYS=\'{"key1": ["fraud"], "admin": ["*"]}\'. '
            "With no keys at all the gateway refuses to start unless `allow_anonymous`."
        ),
    )
    api_keys_path: str = Field(
        "",
        description="Key table file (YAML/JSON, e.g. a mounted Secret), re-read when it changes: rotation "
        "without restart. Maps key or 'sha256:<hex>' -> models, or -> {models, rate_per_s, burst, callback_hosts, "
        "priority}.",
        examples=["/etc/predmesh/api-keys/keys.json"],
    )
    api_keys_poll_ms: float = Field(1000.0, description="How often the key file is checked (milliseconds).")
    allow_anonymous: bool = Field(
        False, description="Serve callers without an API key when no keys are configured (development only)."
    )
    key_rate_per_s: float = Field(
        0.0, ge=0.0, description="Default per-key rate limit (requests per second); 0 = unlimited."
    )
    key_burst: float = Field(0.0, ge=0.0, description="Default per-key burst (requests); 0 = max(rate, 1).")
