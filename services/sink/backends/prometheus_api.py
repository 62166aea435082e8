"""A Prometheus-compatible HTTP query API (Prometheus, Thanos, Mimir, VictoriaMetrics...): instant queries.

`PrometheusApi(url, timeout_s, auth_header, ca_file)`: `query(promql, at_s)` sends
`GET <url>/api/v1/query?query=...&time=...` (the URL may carry a path prefix, e.g.
`https://mimir.example/prometheus`) with the `Authorization` header when one is set (from a
Secret; never logged) and returns the answer's samples (services.sink.core.promql.samples).
Connection errors, timeouts, non-2xx answers (Prometheus answers 400/422/503 with a JSON
`error`) and undecodable bodies raise EvidenceUnavailable: the controller then decides nothing
for that rollout on this pass. Blocking (the controller runs in a worker thread); one connection
per query.
"""

from __future__ import annotations

import http.client
import json
import ssl
from urllib.parse import urlencode, urlsplit

from services.sink.core.promql import Sample, samples
from services.sink.errors import EvidenceUnavailable


class PrometheusApi:
    def __init__(self, url: str, timeout_s: float = 5.0, auth_header: str = "", ca_file: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Prometheus URL must be http(s)://host[:port][/prefix], got {url!r}")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        self._prefix = parts.path.rstrip("/")
        self._timeout_s = timeout_s
        self._auth = auth_header
        self._context = ssl.create_default_context(cafile=ca_file) if self._tls else None
        self.url = f"{parts.scheme}://{parts.netloc}{self._prefix}"

    def query(self, promql: str, at_s: float) -> list[Sample]:
        path = f"{self._prefix}/api/v1/query?" + urlencode({"query": promql, "time": f"{at_s:.3f}"})
        headers = {"Accept": "application/json", "User-Agent": "predmesh-rollout-controller"}
        if self._auth:
            headers["Authorization"] = self._auth
        conn: http.client.HTTPConnection
        if self._context is not None:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout_s, context=self._context)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s)
        try:
            conn.request("GET", path, headers=headers)
            reply = conn.getresponse()
            payload = reply.read(16 << 20)
        except (OSError, http.client.HTTPException) as err:
            raise EvidenceUnavailable(f"Prometheus at {self.url}: {type(err).__name__}: {err}") from err
        finally:
            conn.close()
        try:
            body = json.loads(payload)
        except ValueError:
            body = None
        if not 200 <= reply.status < 300:
            detail = ""
            if isinstance(body, dict):
                detail = f": {body.get('errorType', '')}: {str(body.get('error', ''))[:300]}"
            raise EvidenceUnavailable(f"Prometheus at {self.url}: HTTP {reply.status}{detail}")
        if body is None:
            raise EvidenceUnavailable(f"Prometheus at {self.url}: the answer is not JSON")
        return samples(body)

    def __repr__(self) -> str:
        return f"PrometheusApi({self.url!r})"
