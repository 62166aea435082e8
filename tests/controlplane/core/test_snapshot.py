"""Snapshot versioning and the consistency check."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_pb2

from services.controlplane.core.config import Endpoint, Tracing, default_config
from services.controlplane.core.resources import build_resources
from services.controlplane.core.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE, Snapshot
from services.controlplane.errors import InconsistentSnapshot

EP = Endpoint(host="127.0.0.1", port=50051)


def resources(**overrides: object) -> dict[str, list[object]]:
    res = build_resources(default_config([EP]))
    res.update(overrides)  # type: ignore[arg-type]
    return res


def test_consistent_snapshot_passes_and_indexes_by_name() -> None:
    snap = Snapshot.build("1", resources())
    snap.check()
    assert [c.name for c in snap.get(CLUSTER)] == ["gateway"]
    assert [c.cluster_name for c in snap.get(ENDPOINT, ["gateway"])] == ["gateway"]
    assert snap.get(ENDPOINT, ["other"]) == []
    assert all(snap.type_version(t) == "1" for t in (CLUSTER, ENDPOINT, LISTENER, ROUTE))


def test_unchanged_types_keep_their_version() -> None:
    first = Snapshot.build("1", resources())
    moved = build_resources(default_config([Endpoint(host="127.0.0.2", port=50051)]))
    second = Snapshot.build("2", moved, previous=first)
    assert second.type_version(ENDPOINT) == "2"
    assert second.type_version(CLUSTER) == second.type_version(LISTENER) == second.type_version(ROUTE) == "1"


def test_route_to_missing_cluster_is_rejected() -> None:
    with pytest.raises(InconsistentSnapshot, match="missing cluster 'gateway'"):
        Snapshot.build("1", resources(**{CLUSTER: [], ENDPOINT: []})).check()


def test_weighted_route_to_missing_cluster_is_rejected() -> None:
    rc = route_pb2.RouteConfiguration(name="edge")
    route = rc.virtual_hosts.add(name="v", domains=["*"]).routes.add(name="r")
    route.match.prefix = "/"
    route.route.weighted_clusters.clusters.add(name="gateway", weight={"value": 90})
    route.route.weighted_clusters.clusters.add(name="canary", weight={"value": 10})
    with pytest.raises(InconsistentSnapshot, match="'canary'"):
        Snapshot.build("1", resources(**{ROUTE: [rc]})).check()


def test_eds_cluster_without_load_assignment_is_rejected() -> None:
    with pytest.raises(InconsistentSnapshot, match="no ClusterLoadAssignment"):
        Snapshot.build("1", resources(**{ENDPOINT: []})).check()


def test_listener_with_missing_route_config_is_rejected() -> None:
    with pytest.raises(InconsistentSnapshot, match="missing route config 'edge'"):
        Snapshot.build("1", resources(**{ROUTE: []})).check()


def test_tracing_to_missing_collector_cluster_is_rejected() -> None:
    config = default_config([EP]).model_copy(update={"tracing": Tracing(collector="127.0.0.1:4317")})
    res = build_resources(config)
    Snapshot.build("1", res).check()
    res[CLUSTER] = [c for c in res[CLUSTER] if c.name != "otel_collector"]
    with pytest.raises(InconsistentSnapshot, match="traces to missing cluster"):
        Snapshot.build("1", res).check()


def test_duplicate_names_and_wrong_types_are_rejected() -> None:
    with pytest.raises(InconsistentSnapshot, match="duplicated"):
        Snapshot.build("1", resources(**{CLUSTER: [cluster_pb2.Cluster(name="x"), cluster_pb2.Cluster(name="x")]}))
    with pytest.raises(InconsistentSnapshot, match="is not a"):
        Snapshot.build("1", resources(**{CLUSTER: [route_pb2.RouteConfiguration(name="x")]}))
