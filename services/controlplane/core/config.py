"""The mesh config: what the edge should do, in our own terms (not Envoy's).

`MeshConfig` is an immutable pydantic model. It is loaded from YAML/JSON (a file or
the admin API), validated here, and translated to Envoy resources by
`core.resources.build_resources`. Changes are whole-config replacements or RFC 7386
merge patches (`merge_patch`), both producing a new `MeshConfig`.

Units are in the field names (`_ms`, `_percent`). Nothing here does I/O.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.controlplane.errors import InvalidConfig

PREDICTION_SERVICE = "predmesh.v1.PredictionService"
OUTCOME_SERVICE = "predmesh.v1.OutcomeService"  # RecordOutcome, served by the gateway too
BATCH_JOB_SERVICE = "predmesh.v1.BatchJobService"  # server-side batch jobs, served by the gateway too
# Served by the gateway next to PredictionService and routed through the edge: gRPC server reflection
# (grpcurl, grpcui, Postman, Evans discover the API; v1 for newer tools, which fall back to v1alpha) and
# the standard health service.
PUBLIC_TOOLING_SERVICES = {
    "reflection-v1": "grpc.reflection.v1.ServerReflection",
    "reflection-v1alpha": "grpc.reflection.v1alpha.ServerReflection",
    "health": "grpc.health.v1.Health",
}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Endpoint(_Model):
    """One upstream replica address."""

    host: str = Field(description="IP address of the replica (EDS needs an address, not a DNS name).")
    port: int = Field(ge=1, le=65535)
    weight: int = Field(1, ge=1, le=128, description="Relative load-balancing weight.")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """`host:port` -> Endpoint."""
        host, sep, port = text.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise InvalidConfig(f"endpoint {text!r} is not host:port")
        return cls(host=host, port=int(port))


class HealthCheck(_Model):
    """Active gRPC health checking (grpc.health.v1) of every endpoint of a cluster."""

    interval_ms: int = Field(1000, ge=10)
    timeout_ms: int = Field(500, ge=10)
    unhealthy_threshold: int = Field(2, ge=1)
    healthy_threshold: int = Field(1, ge=1)
    service_name: str = Field("", description="Service name sent in HealthCheckRequest ('' = server).")


class OutlierDetection(_Model):
    """Passive ejection of endpoints that keep failing."""

    consecutive_5xx: int = Field(5, ge=1)
    consecutive_gateway_failure: int = Field(3, ge=1)
    interval_ms: int = Field(1000, ge=10)
    base_ejection_ms: int = Field(5000, ge=10)
    max_ejection_percent: int = Field(50, ge=0, le=100)


class KubernetesDiscovery(_Model):
    """Endpoints of a Kubernetes Service, read from its EndpointSlices."""

    namespace: str = "default"
    service: str
    port_name: str | None = Field(None, description="EndpointSlice port name; None = the first port.")


class Cluster(_Model):
    """An upstream service reached over HTTP/2 (gRPC); endpoints come through EDS."""

    endpoints: tuple[Endpoint, ...] = Field((), description="Static endpoints (used unless `kubernetes` is set).")
    kubernetes: KubernetesDiscovery | None = None
    connect_timeout_ms: int = Field(1000, ge=1)
    health_check: HealthCheck | None = Field(default_factory=HealthCheck)
    outlier_detection: OutlierDetection | None = Field(default_factory=OutlierDetection)
    max_requests: int = Field(1024, ge=1, description="Circuit breaker: max concurrent requests.")
    mtls: bool = Field(
        False,
        description="Call this cluster over mutual TLS: Envoy presents the SDS secret `upstream_cert_secret` "
        "and verifies the upstream against `upstream_ca_secret` (MeshConfig).",
    )
    mtls_identity: str = Field(
        "gateway",
        min_length=1,
        description="With mtls: the DNS SAN the upstream's certificate must carry (its mesh identity); another "
        "mesh certificate at a cluster address is refused.",
    )


class WeightedTarget(_Model):
    cluster: str
    weight: int = Field(ge=0)


class RetryPolicy(_Model):
    retry_on: str = Field("unavailable,reset,connect-failure,refused-stream", description="Envoy retry_on.")
    num_retries: int = Field(3, ge=0, le=10)
    per_try_timeout_ms: int = Field(0, ge=0, description="0 = each try gets the whole route timeout.")


class Route(_Model):
    """A path-prefix route to one cluster or to weighted clusters."""

    name: str
    prefix: str = Field(pattern=r"^/")
    cluster: str | None = None
    weighted: tuple[WeightedTarget, ...] = ()
    timeout_ms: int = Field(5000, ge=0, description="Whole-request timeout; 0 disables.")
    retry: RetryPolicy | None = Field(default_factory=RetryPolicy)

    @model_validator(mode="after")
    def _one_target(self) -> Route:
        if (self.cluster is None) == (not self.weighted):
            raise ValueError("a route needs exactly one of `cluster` or `weighted`")
        if self.weighted and sum(t.weight for t in self.weighted) == 0:
            raise ValueError("weighted targets need a positive total weight")
        return self

    def clusters(self) -> list[str]:
        return [self.cluster] if self.cluster else [t.cluster for t in self.weighted]


class RateLimit(_Model):
    """Local (per-Envoy) token bucket in front of every route."""

    enabled: bool = True
    max_tokens: int = Field(1000, ge=1)
    tokens_per_fill: int = Field(1000, ge=1)
    fill_interval_ms: int = Field(1000, ge=1)


class Tracing(_Model):
    """OpenTelemetry tracing; off while `collector` is None."""

    collector: str | None = Field(None, description="OTLP/gRPC collector host:port.")
    service_name: str = "predmesh-edge"
    sampling_percent: float = Field(100.0, ge=0, le=100)


class Transcoder(_Model):
    """HTTP/JSON -> gRPC transcoding of PredictionService (POST /v1/predict, /v1/predict:batch...),
    OutcomeService (POST /v1/outcomes) and BatchJobService (POST /v1/batch-jobs...)."""

    enabled: bool = True
    services: tuple[str, ...] = (PREDICTION_SERVICE, OUTCOME_SERVICE, BATCH_JOB_SERVICE)


class EdgeTls(_Model):
    """TLS on the edge listener; the certificate comes over SDS as the Secret `secret_name`
    (the control plane reads it from files it watches, never from this config)."""

    enabled: bool = False
    secret_name: str = "edge-cert"
    min_version: str = Field("TLSv1_2", pattern=r"^TLSv1_[23]$")


class Hardening(_Model):
    """Edge-proxy limits (Envoy's edge best practices); defaults suit a public edge."""

    per_connection_buffer_bytes: int = Field(32768, ge=1024)
    max_concurrent_streams: int = Field(100, ge=1)
    initial_stream_window_bytes: int = Field(65536, ge=65535)
    initial_connection_window_bytes: int = Field(1048576, ge=65535)
    stream_idle_timeout_ms: int = Field(300_000, ge=0)
    request_timeout_ms: int = Field(60_000, ge=0)
    request_headers_timeout_ms: int = Field(10_000, ge=0)
    max_grpc_timeout_ms: int = Field(30_000, ge=0, description="Cap on a caller's grpc-timeout header.")
    max_request_bytes: int = Field(1_048_576, ge=1024, description="JSON transcoder request size limit.")
    retry_budget_percent: float = Field(20.0, ge=0, le=100, description="Retries as % of active requests.")
    min_retry_concurrency: int = Field(
        10,
        ge=1,
        description="Retries always allowed at once whatever the budget (a killed replica resets all its "
        "in-flight calls together; each must be re-sent to another one).",
    )
    access_log: bool = True


class MeshConfig(_Model):
    """Everything the edge Envoy needs, versioned by the control plane on every change."""

    listener_host: str = "0.0.0.0"
    listener_port: int = Field(10000, ge=1, le=65535)
    clusters: dict[str, Cluster] = Field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    tracing: Tracing = Field(default_factory=Tracing)
    transcoder: Transcoder = Field(default_factory=Transcoder)
    tls: EdgeTls = Field(default_factory=EdgeTls)
    upstream_cert_secret: str = "upstream-cert"
    upstream_ca_secret: str = "mesh-ca"
    hardening: Hardening = Field(default_factory=Hardening)

    @model_validator(mode="after")
    def _routes_reference_clusters(self) -> MeshConfig:
        names = [r.name for r in self.routes]
        if len(set(names)) != len(names):
            raise ValueError("route names must be unique")
        for route in self.routes:
            missing = [c for c in route.clusters() if c not in self.clusters]
            if missing:
                raise ValueError(f"route {route.name!r} references unknown cluster(s) {missing}")
        return self

    @classmethod
    def parse(cls, data: Any) -> MeshConfig:
        """Validate a dict (from YAML/JSON); raise InvalidConfig with pydantic's explanation."""
        try:
            return cls.model_validate(data or {})
        except ValidationError as err:
            raise InvalidConfig(f"invalid mesh config: {err}") from err

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def merge_patch(self, patch: dict[str, Any]) -> MeshConfig:
        """Apply an RFC 7386 JSON merge patch and validate the result."""
        return MeshConfig.parse(_merge(self.to_dict(), patch))


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def public_routes(cluster: str = "gateway") -> tuple[Route, ...]:
    """PredictionService, OutcomeService, BatchJobService, reflection and health (`PUBLIC_TOOLING_SERVICES`),
    all to `cluster`."""
    tooling = tuple(
        Route(name=name, prefix=f"/{service}/", cluster=cluster, retry=None)
        for name, service in PUBLIC_TOOLING_SERVICES.items()
    )
    return (
        Route(name="prediction", prefix=f"/{PREDICTION_SERVICE}/", cluster=cluster),
        Route(name="outcomes", prefix=f"/{OUTCOME_SERVICE}/", cluster=cluster),
        Route(name="batch-jobs", prefix=f"/{BATCH_JOB_SERVICE}/", cluster=cluster),
        *tooling,
    )


def default_config(gateway_endpoints: list[Endpoint], listener_port: int = 10000) -> MeshConfig:
    """One `gateway` cluster and the public routes (`public_routes`); the local/default setup."""
    return MeshConfig(
        listener_port=listener_port,
        clusters={"gateway": Cluster(endpoints=tuple(gateway_endpoints))},
        routes=public_routes("gateway"),
    )
