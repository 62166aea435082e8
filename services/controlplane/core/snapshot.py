"""Immutable, versioned sets of Envoy resources, checked for consistency before use.

A `Snapshot` holds, for each xDS type URL, the resources by name and that type's
version. `Snapshot.build` gives each type the new version only when its content
changed since `previous`, so an endpoint move re-sends EDS alone. `check()` rejects a
snapshot whose resources point at things that are not there; the cache calls it
before publishing. Snapshots never change after construction (a new version is a new
snapshot) and may be shared between nodes and tasks freely.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.config.trace.v3 import opentelemetry_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2

from services.controlplane.errors import InconsistentSnapshot

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
TYPE_URLS = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)
_MESSAGE_TYPES: dict[str, type] = {
    SECRET: secret_pb2.Secret,
    LISTENER: listener_pb2.Listener,
    ROUTE: route_pb2.RouteConfiguration,
    CLUSTER: cluster_pb2.Cluster,
    ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
}
_HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_OTEL_TYPE = "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig"
_TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
_UPSTREAM_TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"


def content_hash(resources: Mapping[str, Any]) -> str:
    digest = hashlib.sha256()
    for name in sorted(resources):
        digest.update(name.encode())
        digest.update(resources[name].SerializeToString(deterministic=True))
    return digest.hexdigest()


@dataclass(frozen=True)
class Snapshot:
    """Resources by type URL and name, with one version per type."""

    version: str
    resources: Mapping[str, Mapping[str, Any]]
    versions: Mapping[str, str]
    hashes: Mapping[str, str]

    @classmethod
    def build(cls, version: str, resources: Mapping[str, Iterable[Any]], previous: Snapshot | None = None) -> Snapshot:
        """Index `resources` (messages with a `name` or `cluster_name`) and assign type versions.

        A type whose content equals `previous`'s keeps `previous`'s version for that type.
        """
        by_type: dict[str, Mapping[str, Any]] = {}
        versions: dict[str, str] = {}
        hashes: dict[str, str] = {}
        for type_url in TYPE_URLS:
            if type_url == SECRET and not resources.get(SECRET):
                continue  # no TLS: no SDS type at all (Envoy never subscribes to it, nothing to ACK)
            named: dict[str, Any] = {}
            for res in resources.get(type_url, ()):
                if not isinstance(res, _MESSAGE_TYPES[type_url]):
                    raise InconsistentSnapshot(f"{type(res).__name__} is not a {type_url} resource")
                name = str(getattr(res, "cluster_name" if type_url == ENDPOINT else "name"))
                if not name or name in named:
                    raise InconsistentSnapshot(f"{type_url}: resource name {name!r} missing or duplicated")
                named[name] = res
            by_type[type_url] = MappingProxyType(named)
            hashes[type_url] = content_hash(named)
            same = previous is not None and previous.hashes.get(type_url) == hashes[type_url]
            versions[type_url] = previous.versions[type_url] if same and previous else version
        unknown = set(resources) - set(TYPE_URLS)
        if unknown:
            raise InconsistentSnapshot(f"unsupported resource types {sorted(unknown)}")
        return cls(version, MappingProxyType(by_type), MappingProxyType(versions), MappingProxyType(hashes))

    def type_version(self, type_url: str) -> str:
        return self.versions.get(type_url, "")

    def get(self, type_url: str, names: Iterable[str] = ()) -> list[Any]:
        """Resources of `type_url`; only those in `names` unless `names` is empty (wildcard)."""
        table = self.resources.get(type_url, {})
        wanted = set(names)
        return [table[n] for n in sorted(table) if not wanted or n in wanted]

    def check(self) -> None:
        """Raise InconsistentSnapshot when a reference points at a missing resource."""
        problems: list[str] = []
        clusters = self.resources[CLUSTER]
        routes = self.resources[ROUTE]
        endpoints = self.resources[ENDPOINT]
        for listener in self.resources[LISTENER].values():
            for name in _sds_names(listener):
                if name not in self.resources.get(SECRET, {}):
                    problems.append(f"listener {listener.name!r} uses missing secret {name!r}")
            for hcm in _http_managers(listener):
                if hcm.HasField("rds"):
                    name = hcm.rds.route_config_name
                    if name not in routes:
                        problems.append(f"listener {listener.name!r} uses missing route config {name!r}")
                elif hcm.HasField("route_config"):
                    problems += _route_problems(hcm.route_config, clusters)
                if hcm.tracing.HasField("provider"):
                    problems += _tracing_problems(listener.name, hcm, clusters)
        for route_config in routes.values():
            problems += _route_problems(route_config, clusters)
        for cluster in clusters.values():
            for name in _upstream_sds_names(cluster):
                if name not in self.resources.get(SECRET, {}):
                    problems.append(f"cluster {cluster.name!r} uses missing secret {name!r}")
            if cluster.type == cluster_pb2.Cluster.EDS:
                name = cluster.eds_cluster_config.service_name or cluster.name
                if name not in endpoints:
                    problems.append(f"EDS cluster {cluster.name!r} has no ClusterLoadAssignment {name!r}")
        if problems:
            raise InconsistentSnapshot(f"snapshot {self.version} rejected: " + "; ".join(problems))


def _sds_names(listener: Any) -> list[str]:
    names = []
    for chain in listener.filter_chains:
        if chain.transport_socket.typed_config.type_url == _TLS_TYPE:
            tls = tls_pb2.DownstreamTlsContext()
            chain.transport_socket.typed_config.Unpack(tls)
            names += [c.name for c in tls.common_tls_context.tls_certificate_sds_secret_configs]
    return names


def _upstream_sds_names(cluster: Any) -> list[str]:
    if cluster.transport_socket.typed_config.type_url != _UPSTREAM_TLS_TYPE:
        return []
    tls = tls_pb2.UpstreamTlsContext()
    cluster.transport_socket.typed_config.Unpack(tls)
    common = tls.common_tls_context
    names = [c.name for c in common.tls_certificate_sds_secret_configs]
    if common.HasField("validation_context_sds_secret_config"):
        names.append(common.validation_context_sds_secret_config.name)
    return names


def _http_managers(listener: Any) -> list[Any]:
    found = []
    for chain in listener.filter_chains:
        for flt in chain.filters:
            if flt.typed_config.type_url == _HCM_TYPE:
                hcm = hcm_pb2.HttpConnectionManager()
                flt.typed_config.Unpack(hcm)
                found.append(hcm)
    return found


def _route_problems(route_config: Any, clusters: Mapping[str, Any]) -> list[str]:
    problems = []
    for vhost in route_config.virtual_hosts:
        for route in vhost.routes:
            if not route.HasField("route"):
                continue
            action = route.route
            names = [action.cluster] if action.cluster else [w.name for w in action.weighted_clusters.clusters]
            names += [m.cluster for m in action.request_mirror_policies]
            for name in names:
                if name not in clusters:
                    problems.append(f"route {route.name or route.match} -> missing cluster {name!r}")
    return problems


def _tracing_problems(listener_name: str, hcm: Any, clusters: Mapping[str, Any]) -> list[str]:
    provider = hcm.tracing.provider
    if provider.typed_config.type_url != _OTEL_TYPE:
        return []
    otel = opentelemetry_pb2.OpenTelemetryConfig()
    provider.typed_config.Unpack(otel)
    name = otel.grpc_service.envoy_grpc.cluster_name
    if name and name not in clusters:
        return [f"listener {listener_name!r} traces to missing cluster {name!r}"]
    return []
