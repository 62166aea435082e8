"""Settings of the features service (env prefix `PREDMESH_FEATURES_`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from predmesh.common.redistls import RedisTlsSettings
from predmesh.common.settings import ServerSettings


class FeaturesSettings(ServerSettings, RedisTlsSettings):
    """Features service settings; every field can be set as PREDMESH_FEATURES_<FIELD>."""

    model_config = SettingsConfigDict(env_prefix="PREDMESH_FEATURES_")
    allowed_clients: dict[str, list[str]] = Field(
        default_factory=lambda: {"/predmesh.v1.FeatureService/*": ["gateway", "operator"]},
        description="mTLS: who may call which method (see ServerSettings); only the gateway reads features.",
    )

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis URL holding the feature hashes; rediss:// = TLS (see redis_tls_*);"
        " `redis+cluster://host:port` (or `rediss+cluster://`) names a seed node of a Redis Cluster."
        " A password in the URL is redacted from every log line.",
    )
    redis_cluster: bool = Field(
        False, description="Treat redis_url as a seed node of a Redis Cluster (implied by a redis+cluster:// URL)."
    )
    registry_path: Path = Field(
        description="Feature registry YAML file (required: a pod without one must not serve some default registry; "
        "the local mesh passes predmesh/demo/features.yaml).",
    )
    redis_cluster_fast_path: bool = Field(
        True,
        description="On a Redis Cluster, read with one plain pipeline per master (keys grouped by slot);"
        " false = redis-py's cluster pipeline for every read (both fall back to it on MOVED/ASK/errors).",
    )
    redis_timeout_ms: float = Field(
        100.0,
        gt=0,
        description="Timeout for connecting to Redis, each read/write and waiting for a pooled connection"
        " (milliseconds). On expiry the RPC fails UNAVAILABLE so the gateway can degrade.",
    )
    redis_retries: int = Field(
        1,
        ge=0,
        description="Re-sends after a Redis connection error or timeout (count); worst-case read latency is"
        " about (retries + 1) * redis_timeout_ms.",
    )
    redis_max_connections: int = Field(64, gt=0, description="Size of the Redis connection pool (connections).")
    redis_coalesce: bool = Field(
        True,
        description="Read the entities of concurrent GetFeatures calls together: one pipeline per event-loop"
        " iteration, at most redis_coalesce_max_inflight at once (false: one pipeline per call).",
    )
    redis_coalesce_max_inflight: int = Field(
        1,
        gt=0,
        description="Most coalesced Redis reads in flight at once (reads); callers arriving meanwhile wait for one"
        " to finish and go together (1 measured cheapest, docs/BENCHMARKS.md).",
    )
    redis_coalesce_max_keys: int = Field(
        1024, gt=0, description="Most entities in one coalesced Redis read (entities; a larger call is read alone)."
    )

    cache_ttl_ms: float = Field(
        200.0,
        ge=0,
        description="How long an entity read from Redis is served from the local cache (milliseconds);"
        " Redis writes become visible after at most this long. 0 disables the cache.",
    )
    cache_max_entries: int = Field(
        10_000, ge=0, description="Most entities kept in the local cache (entries); 0 disables the cache."
    )
    max_entities: int = Field(1024, gt=0, description="Most entities in one GetFeatures request (entities).")
    max_entity_id_length: int = Field(256, gt=0, description="Longest accepted entity id (characters).")
