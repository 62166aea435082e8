"""A real Prometheus server on a loopback port (tests and local experiments).

`PrometheusServer(targets, scrape_interval_s)` scrapes the given `host:port` targets (plain
HTTP, `/metrics`) into a TSDB under its workdir and serves the query API at `url`
(`/api/v1/query`); ready when `/-/ready` answers 200. The binary comes from Debian's
`prometheus` package, unpacked next to our interpreter by `./dev setup` (no service is started
by that: the package's maintainer scripts are not run); `PREDMESH_PROMETHEUS_BIN` overrides it.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from predmesh.local.procs import ManagedProcess, find_binary, free_port


def prometheus_binary() -> str:
    explicit = os.environ.get("PREDMESH_PROMETHEUS_BIN")
    if explicit:
        return explicit
    return find_binary("prometheus", [Path("/usr/bin")])


class PrometheusServer(ManagedProcess):
    name = "prometheus"
    ready_timeout_s = 30.0

    def __init__(
        self,
        targets: Sequence[str],
        scrape_interval_s: float = 1.0,
        workdir: Path | None = None,
        port: int = 0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(workdir, env)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        interval = f"{int(scrape_interval_s * 1000)}ms"
        config = {
            "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
            "scrape_configs": [{"job_name": "predmesh", "static_configs": [{"targets": list(targets)}]}],
        }
        self.config_path = self.workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))

    def command(self) -> Sequence[str]:
        return [
            prometheus_binary(),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]

    def ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1.0) as reply:
            return bool(reply.status == 200)

    def query(self, promql: str) -> dict[str, object]:
        """The JSON answer of an instant query now (for tests)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5.0) as reply:
            return dict(json.loads(reply.read()))
