"""Mesh config validation and its translation to Envoy resources."""

from __future__ import annotations

import pytest
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from services.controlplane.core.config import Endpoint, MeshConfig, default_config
from services.controlplane.core.descriptors import prediction_descriptor_set
from services.controlplane.core.resources import RATE_LIMIT_FILTER, TRACING_CLUSTER, build_resources
from services.controlplane.core.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE, Snapshot
from services.controlplane.errors import InvalidConfig

EP = Endpoint(host="10.0.0.1", port=50051)


def hcm_of(resources: dict[str, list[object]]) -> http_connection_manager_pb2.HttpConnectionManager:
    hcm = http_connection_manager_pb2.HttpConnectionManager()
    resources[LISTENER][0].filter_chains[0].filters[0].typed_config.Unpack(hcm)  # type: ignore[attr-defined]
    return hcm


def test_default_config_resources() -> None:
    res = build_resources(default_config([EP], listener_port=10001), descriptor_set=prediction_descriptor_set())
    listener = res[LISTENER][0]
    assert listener.address.socket_address.port_value == 10001
    hcm = hcm_of(res)
    assert hcm.codec_type == hcm.AUTO and hcm.rds.route_config_name == "edge"
    assert [f.name for f in hcm.http_filters] == [
        RATE_LIMIT_FILTER,
        "envoy.filters.http.buffer",  # whole JSON bodies for the unknown-field check (REST paths only)
        "envoy.filters.http.lua",
        "envoy.filters.http.grpc_json_transcoder",
        "envoy.filters.http.router",
    ]
    assert len(hcm.local_reply_config.mappers) == 10  # HTTP callers get JSON {code, message} errors
    assert not hcm.HasField("tracing")  # no collector configured

    cluster = res[CLUSTER][0]
    assert cluster.name == "gateway" and cluster.type == cluster.EDS
    assert "envoy.extensions.upstreams.http.v3.HttpProtocolOptions" in cluster.typed_extension_protocol_options
    assert cluster.health_checks[0].HasField("grpc_health_check")
    assert cluster.outlier_detection.consecutive_5xx.value == 5

    routes = res[ROUTE][0].virtual_hosts[0].routes
    assert [r.match.prefix for r in routes] == [
        "/predmesh.v1.PredictionService/",
        "/predmesh.v1.OutcomeService/",
        "/predmesh.v1.BatchJobService/",
        "/grpc.reflection.v1.ServerReflection/",
        "/grpc.reflection.v1alpha.ServerReflection/",
        "/grpc.health.v1.Health/",
    ]
    assert all(
        r.route.cluster == "gateway" and "envoy.filters.http.buffer" in r.typed_per_filter_config for r in routes
    )
    route = routes[0]
    assert route.route.cluster == "gateway"
    assert "unavailable" in route.route.retry_policy.retry_on
    assert route.route.timeout.seconds == 5

    rl = local_rate_limit_pb2.LocalRateLimit()
    res[ROUTE][0].virtual_hosts[0].typed_per_filter_config[RATE_LIMIT_FILTER].Unpack(rl)
    assert rl.rate_limited_as_resource_exhausted and rl.token_bucket.max_tokens == 1000

    cla = res[ENDPOINT][0]
    sock = cla.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (sock.address, sock.port_value) == ("10.0.0.1", 50051)
    Snapshot.build("1", res).check()


def test_tracing_weighted_routes_and_disabled_rate_limit() -> None:
    config = MeshConfig.parse(
        {
            "clusters": {"gateway": {"endpoints": [{"host": "10.0.0.1", "port": 1}]}, "canary": {}},
            "routes": [
                {
                    "name": "p",
                    "prefix": "/",
                    "weighted": [{"cluster": "gateway", "weight": 90}, {"cluster": "canary", "weight": 10}],
                }
            ],
            "rate_limit": {"enabled": False},
            "tracing": {"collector": "otel.observability:4317", "sampling_percent": 5},
        }
    )
    res = build_resources(config)
    hcm = hcm_of(res)
    assert hcm.tracing.provider.name == "envoy.tracers.opentelemetry"
    assert hcm.tracing.random_sampling.value == 5
    assert TRACING_CLUSTER in {c.name for c in res[CLUSTER]}
    weighted = res[ROUTE][0].virtual_hosts[0].routes[0].route.weighted_clusters.clusters
    assert [(w.name, w.weight.value) for w in weighted] == [("gateway", 90), ("canary", 10)]
    assert RATE_LIMIT_FILTER not in res[ROUTE][0].virtual_hosts[0].typed_per_filter_config
    assert [c.cluster_name for c in res[ENDPOINT]] == ["canary", "gateway"]
    Snapshot.build("1", res).check()


@pytest.mark.parametrize(
    "data",
    [
        {"routes": [{"name": "r", "prefix": "/", "cluster": "nope"}]},
        {"clusters": {"g": {}}, "routes": [{"name": "r", "prefix": "/", "cluster": "g", "weighted": []}] * 2},
        {"clusters": {"g": {}}, "routes": [{"name": "r", "prefix": "x", "cluster": "g"}]},
        {"rate_limit": {"fill_interval_ms": 0}},
        {"unknown_field": 1},
    ],
)
def test_invalid_configs_are_rejected(data: dict[str, object]) -> None:
    with pytest.raises(InvalidConfig):
        MeshConfig.parse(data)


def test_merge_patch_replaces_lists_and_deletes_with_null() -> None:
    config = default_config([EP])
    patched = config.merge_patch(
        {"clusters": {"gateway": {"endpoints": [{"host": "10.0.0.2", "port": 2}], "outlier_detection": None}}}
    )
    assert patched.clusters["gateway"].endpoints == (Endpoint(host="10.0.0.2", port=2),)
    assert patched.clusters["gateway"].outlier_detection is not None  # null removes -> default comes back
    assert patched.rate_limit == config.rate_limit
    with pytest.raises(InvalidConfig):
        config.merge_patch({"rate_limit": {"max_tokens": -1}})


def test_descriptor_set_has_rest_rules_and_every_dependency() -> None:
    fds = descriptor_pb2.FileDescriptorSet.FromString(prediction_descriptor_set())
    names = [f.name for f in fds.file]
    assert names.index("predmesh/v1/common.proto") < names.index("predmesh/v1/prediction.proto")
    assert names.index("google/api/http.proto") < names.index("google/api/annotations.proto")
    prediction = fds.file[names.index("predmesh/v1/prediction.proto")]
    service = next(s for s in prediction.service if s.name == "PredictionService")
    predict = next(m for m in service.method if m.name == "Predict")
    rule = predict.options.Extensions[annotations_pb2.http]
    assert rule.post == "/v1/predict" and rule.body == "*"
    assert rule.additional_bindings[0].post == "/predmesh.v1.PredictionService/Predict"
    polling = next(m for m in service.method if m.name == "GetPrediction")
    rule = polling.options.Extensions[annotations_pb2.http]
    assert rule.get == "/v1/predictions/{request_id}" and rule.body == ""  # a GET has no body


def test_endpoint_parse() -> None:
    assert Endpoint.parse("10.1.2.3:80") == Endpoint(host="10.1.2.3", port=80)
    with pytest.raises(InvalidConfig):
        Endpoint.parse("nohost")
