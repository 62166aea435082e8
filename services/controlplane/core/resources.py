"""MeshConfig + endpoints -> Envoy v3 resources (Listener, RouteConfiguration, Cluster, CLA).

Resources are written as dicts in Envoy's own JSON shape and parsed with
`json_format.ParseDict`, which needs every `typed_config` message type imported
(hence the imports below, kept even where unused).

What the edge gets:
- one Listener `edge` (HTTP connection manager, codec AUTO: HTTP/2 gRPC and HTTP/1.1 JSON),
  routes from RDS; filters: local rate limit, grpc_json_transcoder, router;
  OpenTelemetry tracing when a collector is configured;
- one RouteConfiguration `edge`: a virtual host `*` with the configured routes (timeout,
  retries, `grpc-timeout` honoured) and the rate-limit token bucket as per-virtual-host
  config, so a rate-limit change is an RDS push that does not drain the listener;
- one EDS Cluster per configured cluster (HTTP/2, gRPC health checks, outlier
  detection, circuit breakers) and its ClusterLoadAssignment.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.config.trace.v3 import opentelemetry_pb2  # noqa: F401 - typed_config
from envoy.extensions.access_loggers.stream.v3 import stream_pb2  # noqa: F401 - typed_config
from envoy.extensions.filters.http.buffer.v3 import buffer_pb2  # noqa: F401 - typed_config
from envoy.extensions.filters.http.grpc_json_transcoder.v3 import transcoder_pb2  # noqa: F401
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2  # noqa: F401
from envoy.extensions.filters.http.lua.v3 import lua_pb2  # noqa: F401 - typed_config
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # noqa: F401
    http_connection_manager_pb2,
)
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2  # noqa: F401
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2  # noqa: F401
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401
from google.protobuf import json_format

from services.controlplane.core.config import Cluster, Endpoint, Hardening, MeshConfig, Route
from services.controlplane.core.descriptors import HTTP_RULES
from services.controlplane.core.jsonfields import lua_for
from services.controlplane.core.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET

LISTENER_NAME = "edge"
ROUTE_CONFIG_NAME = "edge"
TRACING_CLUSTER = "otel_collector"
RATE_LIMIT_FILTER = "envoy.filters.http.local_ratelimit"
BUFFER_FILTER = "envoy.filters.http.buffer"
LUA_FILTER = "envoy.filters.http.lua"
_T = "type.googleapis.com/"
_ADS = {"ads": {}, "resource_api_version": "V3"}
_HTTP2_OPTIONS = {
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": _T + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}},
    }
}


def _dur(ms: float) -> str:
    return f"{ms / 1000:.3f}s"


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def build_resources(
    config: MeshConfig,
    endpoints: Mapping[str, Sequence[Endpoint]] | None = None,
    descriptor_set: bytes | None = None,
    secrets: Mapping[str, tuple[bytes, bytes]] | None = None,
) -> dict[str, list[Any]]:
    """All resources for `config`. `endpoints` overrides a cluster's static endpoints
    (e.g. from Kubernetes); `descriptor_set` enables the JSON transcoder; `secrets` are
    TLS certificates by name, (certificate chain PEM, private key PEM), served over SDS."""
    endpoints = endpoints or {}
    clusters = [_cluster(name, c, config) for name, c in sorted(config.clusters.items())]
    loads = [_load_assignment(name, endpoints.get(name, c.endpoints)) for name, c in sorted(config.clusters.items())]
    if config.tracing.collector:
        clusters.append(_tracing_cluster(config.tracing.collector))
    return {
        LISTENER: [_listener(config, descriptor_set)],
        ROUTE: [_route_config(config)],
        CLUSTER: clusters,
        ENDPOINT: loads,
        # Only referenced secrets: an unreferenced one would never be asked for (or ACKed).
        SECRET: [
            _secret(name, cert, key) for name, (cert, key) in sorted((secrets or {}).items()) if name in _wanted(config)
        ],
    }


def _wanted(config: MeshConfig) -> set[str]:
    names = {config.tls.secret_name} if config.tls.enabled else set()
    if any(c.mtls for c in config.clusters.values()):
        names |= {config.upstream_cert_secret, config.upstream_ca_secret}
    return names


def _secret(name: str, cert: bytes, key: bytes) -> Any:
    """A certificate + key, or (empty key) a CA bundle used as a validation context."""
    secret = secret_pb2.Secret(name=name)
    if key:
        secret.tls_certificate.certificate_chain.inline_bytes = cert
        secret.tls_certificate.private_key.inline_bytes = key
    else:
        secret.validation_context.trusted_ca.inline_bytes = cert
    return secret


def _upstream_tls(config: MeshConfig, identity: str) -> dict[str, Any]:
    """Envoy's client side of mutual TLS to a cluster: its certificate and the mesh CA over SDS,
    and only an upstream whose certificate carries the DNS SAN `identity`."""
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": _T + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": identity,
            "common_tls_context": {
                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
                "alpn_protocols": ["h2"],
                "tls_certificate_sds_secret_configs": [{"name": config.upstream_cert_secret, "sds_config": _ADS}],
                "combined_validation_context": {
                    "default_validation_context": {
                        "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": identity}}]
                    },
                    "validation_context_sds_secret_config": {"name": config.upstream_ca_secret, "sds_config": _ADS},
                },
            },
        },
    }


def _downstream_tls(config: MeshConfig) -> dict[str, Any]:
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": _T + "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "common_tls_context": {
                "tls_params": {"tls_minimum_protocol_version": config.tls.min_version},
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_certificate_sds_secret_configs": [{"name": config.tls.secret_name, "sds_config": _ADS}],
            },
        },
    }


# -- listener ------------------------------------------------------------------------
def _listener(config: MeshConfig, descriptor_set: bytes | None) -> Any:
    filters: list[dict[str, Any]] = [
        {
            # Token bucket comes per virtual host from RDS; this only installs the filter.
            "name": RATE_LIMIT_FILTER,
            "typed_config": {
                "@type": _T + "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
                "stat_prefix": "edge_rate_limit",
            },
        }
    ]
    if config.transcoder.enabled and descriptor_set:
        filters += [
            {
                # Whole JSON bodies (up to the transcoder's limit) for the unknown-field check below; every
                # configured route (gRPC paths) turns it off, so only the REST paths are buffered.
                "name": BUFFER_FILTER,
                "typed_config": {
                    "@type": _T + "envoy.extensions.filters.http.buffer.v3.Buffer",
                    "max_request_bytes": config.hardening.max_request_bytes,
                },
            },
            {
                "name": LUA_FILTER,
                "typed_config": {
                    "@type": _T + "envoy.extensions.filters.http.lua.v3.Lua",
                    "default_source_code": {"inline_string": lua_for(descriptor_set, HTTP_RULES)},
                },
            },
        ]
        filters.append(
            {
                "name": "envoy.filters.http.grpc_json_transcoder",
                "typed_config": {
                    "@type": _T + "envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
                    "proto_descriptor_bin": base64.b64encode(descriptor_set).decode(),
                    "services": list(config.transcoder.services),
                    "auto_mapping": True,
                    "convert_grpc_status": True,
                    "max_request_body_size": config.hardening.max_request_bytes,
                    "print_options": {
                        "preserve_proto_field_names": True,
                        "always_print_primitive_fields": True,
                    },
                },
            }
        )
    filters.append(
        {
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": _T + "envoy.extensions.filters.http.router.v3.Router"},
        }
    )
    hcm: dict[str, Any] = {
        "@type": _T + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "edge",
        "codec_type": "AUTO",
        "rds": {"route_config_name": ROUTE_CONFIG_NAME, "config_source": _ADS},
        "http_filters": filters,
        "generate_request_id": True,
        **_hcm_hardening(config.hardening),
    }
    if config.transcoder.enabled and descriptor_set:
        hcm["local_reply_config"] = _json_local_replies()
    if config.tracing.collector:
        hcm["tracing"] = {
            "random_sampling": {"value": config.tracing.sampling_percent},
            "provider": {
                "name": "envoy.tracers.opentelemetry",
                "typed_config": {
                    "@type": _T + "envoy.config.trace.v3.OpenTelemetryConfig",
                    "grpc_service": {"envoy_grpc": {"cluster_name": TRACING_CLUSTER}, "timeout": "1s"},
                    "service_name": config.tracing.service_name,
                },
            },
        }
    chain: dict[str, Any] = {
        "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]
    }
    if config.tls.enabled:
        chain["transport_socket"] = _downstream_tls(config)
    listener = {
        "name": LISTENER_NAME,
        "address": _socket(config.listener_host, config.listener_port),
        "per_connection_buffer_limit_bytes": config.hardening.per_connection_buffer_bytes,
        "filter_chains": [chain],
    }
    return json_format.ParseDict(listener, listener_pb2.Listener())


# Envoy's own replies to HTTP (non-gRPC) callers, as the JSON body the transcoder gives upstream errors:
# {"code": <gRPC status code>, "message": ...}. HTTP status -> gRPC code as in gRPC's HTTP mapping.
LOCAL_REPLY_CODES = {400: 3, 401: 16, 403: 7, 404: 12, 408: 4, 413: 3, 429: 8, 503: 14, 504: 4}
UNKNOWN_CODE = 2


def _json_local_replies() -> dict[str, Any]:
    def mapper(code: int, status: int | None, message: str = "%LOCAL_REPLY_BODY%") -> dict[str, Any]:
        # An HTTP caller: its content type is not gRPC, or the transcoder rewrote it (and kept the original path).
        http_caller = {
            "or_filter": {
                "filters": [
                    {
                        "header_filter": {
                            "header": {
                                "name": "content-type",
                                "string_match": {"prefix": "application/grpc"},
                                "invert_match": True,
                                "treat_missing_header_as_empty": True,
                            }
                        }
                    },
                    {"header_filter": {"header": {"name": "x-envoy-original-path", "present_match": True}}},
                ]
            }
        }
        filters: list[dict[str, Any]] = [http_caller]
        if status is not None:
            filters.append(
                {
                    "status_code_filter": {
                        "comparison": {
                            "op": "EQ",
                            "value": {"default_value": status, "runtime_key": "predmesh_local_reply_status"},
                        }
                    }
                }
            )
        return {
            "filter": {"and_filter": {"filters": filters}} if len(filters) > 1 else filters[0],
            "body_format_override": {
                "json_format": {"code": code, "message": message},
                "content_type": "application/json",
            },
        }

    mappers = [mapper(code, status) for status, code in LOCAL_REPLY_CODES.items() if status != 404]
    # Envoy's 404 (no route) has an empty body: say what was not found.
    mappers.append(mapper(LOCAL_REPLY_CODES[404], 404, "no such path: %REQ(:METHOD)% %REQ(:PATH)%"))
    return {"mappers": [*mappers, mapper(UNKNOWN_CODE, None)]}


def _hcm_hardening(h: Hardening) -> dict[str, Any]:
    """Envoy's edge-proxy guidance: real client address, normalised paths, bounded streams and timeouts."""
    out: dict[str, Any] = {
        "use_remote_address": True,
        "xff_num_trusted_hops": 0,
        "normalize_path": True,
        "merge_slashes": True,
        "path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT",
        "common_http_protocol_options": {
            "idle_timeout": "3600s",
            "headers_with_underscores_action": "REJECT_REQUEST",
        },
        "http2_protocol_options": {
            "max_concurrent_streams": h.max_concurrent_streams,
            "initial_stream_window_size": h.initial_stream_window_bytes,
            "initial_connection_window_size": h.initial_connection_window_bytes,
        },
        "stream_idle_timeout": _dur(h.stream_idle_timeout_ms),
        "request_timeout": _dur(h.request_timeout_ms),
        "request_headers_timeout": _dur(h.request_headers_timeout_ms),
    }
    if h.access_log:
        out["access_log"] = [
            {
                "name": "envoy.access_loggers.stdout",
                "typed_config": {"@type": _T + "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"},
            }
        ]
    return out


# -- routes --------------------------------------------------------------------------
def _route(route: Route, hardening: Hardening) -> dict[str, Any]:
    action: dict[str, Any] = {
        "timeout": _dur(route.timeout_ms),
        # Honour the caller's grpc-timeout (deadline propagation), capped so no caller holds a stream
        # forever; `timeout` applies without one.
        "max_stream_duration": {"grpc_timeout_header_max": _dur(hardening.max_grpc_timeout_ms)},
    }
    if route.cluster:
        action["cluster"] = route.cluster
    else:
        action["weighted_clusters"] = {
            "clusters": [{"name": t.cluster, "weight": t.weight} for t in route.weighted if t.weight > 0]
        }
    if route.retry and route.retry.num_retries > 0:
        retry: dict[str, Any] = {
            "retry_on": route.retry.retry_on,
            "num_retries": route.retry.num_retries,
            "retry_host_predicate": [
                {
                    "name": "envoy.retry_host_predicates.previous_hosts",
                    "typed_config": {
                        "@type": _T + "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
                    },
                }
            ],
            "host_selection_retry_max_attempts": 3,
        }
        if route.retry.per_try_timeout_ms:
            retry["per_try_timeout"] = _dur(route.retry.per_try_timeout_ms)
        action["retry_policy"] = retry
    # Configured routes are gRPC paths: no body buffering and no JSON field check there (the REST paths
    # match no route until the transcoder rewrites them, so both filters run for those only).
    unbuffered = {
        BUFFER_FILTER: {"@type": _T + "envoy.extensions.filters.http.buffer.v3.BufferPerRoute", "disabled": True},
        LUA_FILTER: {"@type": _T + "envoy.extensions.filters.http.lua.v3.LuaPerRoute", "disabled": True},
    }
    return {
        "name": route.name,
        "match": {"prefix": route.prefix},
        "route": action,
        "typed_per_filter_config": unbuffered,
    }


def _route_config(config: MeshConfig) -> Any:
    vhost: dict[str, Any] = {
        "name": "edge",
        "domains": ["*"],
        "routes": [_route(r, config.hardening) for r in config.routes],
    }
    rl = config.rate_limit
    if rl.enabled:
        always = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}
        vhost["typed_per_filter_config"] = {
            RATE_LIMIT_FILTER: {
                "@type": _T + "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
                "stat_prefix": "edge_rate_limit",
                "token_bucket": {
                    "max_tokens": rl.max_tokens,
                    "tokens_per_fill": rl.tokens_per_fill,
                    "fill_interval": _dur(rl.fill_interval_ms),
                },
                "filter_enabled": {**always, "runtime_key": "edge_rate_limit_enabled"},
                "filter_enforced": {**always, "runtime_key": "edge_rate_limit_enforced"},
                # gRPC callers see RESOURCE_EXHAUSTED instead of the default UNAVAILABLE (HTTP 429).
                "rate_limited_as_resource_exhausted": True,
                "response_headers_to_add": [
                    {
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                        "header": {"key": "x-predmesh-rate-limited", "value": "true"},
                    }
                ],
            }
        }
    return json_format.ParseDict({"name": ROUTE_CONFIG_NAME, "virtual_hosts": [vhost]}, route_pb2.RouteConfiguration())


# -- clusters and endpoints ------------------------------------------------------------
def _cluster(name: str, cluster: Cluster, config: MeshConfig) -> Any:
    hardening = config.hardening
    spec: dict[str, Any] = {
        "name": name,
        "type": "EDS",
        "eds_cluster_config": {"eds_config": _ADS},
        "connect_timeout": _dur(cluster.connect_timeout_ms),
        "lb_policy": "ROUND_ROBIN",
        # EDS is the source of truth: a removed host leaves now, even while it passes health checks.
        "ignore_health_on_host_removal": True,
        "typed_extension_protocol_options": _HTTP2_OPTIONS,
        "per_connection_buffer_limit_bytes": hardening.per_connection_buffer_bytes,
        "circuit_breakers": {
            "thresholds": [
                {
                    "max_requests": cluster.max_requests,
                    "max_pending_requests": cluster.max_requests,
                    # Retries may add at most this share of the active requests (no retry storms).
                    "retry_budget": {
                        "budget_percent": {"value": hardening.retry_budget_percent},
                        "min_retry_concurrency": hardening.min_retry_concurrency,
                    },
                }
            ]
        },
    }
    if cluster.mtls:
        spec["transport_socket"] = _upstream_tls(config, cluster.mtls_identity)
    if cluster.health_check:
        hc = cluster.health_check
        spec["health_checks"] = [
            {
                "timeout": _dur(hc.timeout_ms),
                "interval": _dur(hc.interval_ms),
                # Envoy's default is one check a minute until it considers the cluster busy: a replica
                # reporting NOT_SERVING (draining) must be taken out within interval x threshold.
                "no_traffic_interval": _dur(hc.interval_ms),
                "no_traffic_healthy_interval": _dur(hc.interval_ms),
                "unhealthy_threshold": hc.unhealthy_threshold,
                "healthy_threshold": hc.healthy_threshold,
                "grpc_health_check": {"service_name": hc.service_name},
            }
        ]
    if cluster.outlier_detection:
        od = cluster.outlier_detection
        spec["outlier_detection"] = {
            "consecutive_5xx": od.consecutive_5xx,
            "consecutive_gateway_failure": od.consecutive_gateway_failure,
            "interval": _dur(od.interval_ms),
            "base_ejection_time": _dur(od.base_ejection_ms),
            "max_ejection_percent": od.max_ejection_percent,
        }
    return json_format.ParseDict(spec, cluster_pb2.Cluster())


def _lb_endpoints(endpoints: Sequence[Endpoint]) -> list[dict[str, Any]]:
    return [{"endpoint": {"address": _socket(e.host, e.port)}, "load_balancing_weight": e.weight} for e in endpoints]


def _load_assignment(name: str, endpoints: Sequence[Endpoint]) -> Any:
    spec: dict[str, Any] = {"cluster_name": name, "endpoints": []}
    if endpoints:
        spec["endpoints"] = [
            {
                "locality": {"zone": "default"},
                # proxyless gRPC clients need a locality weight
                "load_balancing_weight": sum(e.weight for e in endpoints),
                "lb_endpoints": _lb_endpoints(endpoints),
            }
        ]
    return json_format.ParseDict(spec, endpoint_pb2.ClusterLoadAssignment())


def _tracing_cluster(collector: str) -> Any:
    target = Endpoint.parse(collector)
    try:
        ipaddress.ip_address(target.host)
        kind = "STATIC"
    except ValueError:
        kind = "STRICT_DNS"
    spec = {
        "name": TRACING_CLUSTER,
        "type": kind,
        "connect_timeout": "1s",
        "typed_extension_protocol_options": _HTTP2_OPTIONS,
        "load_assignment": {
            "cluster_name": TRACING_CLUSTER,
            "endpoints": [{"lb_endpoints": _lb_endpoints([target])}],
        },
    }
    return json_format.ParseDict(spec, cluster_pb2.Cluster())
