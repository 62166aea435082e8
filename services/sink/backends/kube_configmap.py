"""The routing table as a Kubernetes ConfigMap, read and patched through the API server over HTTPS.

`ConfigMapRoutingStore(KubeApi(...), namespace, name, key)` implements
services.sink.core.routing_store.RoutingStore:

- `read()`: `GET /api/v1/namespaces/NS/configmaps/NAME`, the YAML under `data[key]`;
- `rewrite(change)`: GET, apply `change`, then `PATCH` (JSON merge patch) with the
  `metadata.resourceVersion` that was read: the API server refuses it with 409 Conflict when
  someone else (`helm upgrade`, kubectl, another controller) changed the object in between; then
  it reads again and re-applies `change` (at most `attempts` times), so no change is lost.

The controller only needs `get` and `patch` on this one ConfigMap (the chart's Role names it in
`resourceNames`). `KubeApi.in_cluster()` uses the pod's service account: the API server from
KUBERNETES_SERVICE_HOST/PORT, the token file (re-read on every request: projected tokens rotate)
and the cluster CA. Plain `http.client` over TLS; no Kubernetes client dependency. Blocking.
Failures raise RoutingApiError (the controller logs it and retries on its next pass).
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import yaml

from services.sink.core.routing_store import Change
from services.sink.errors import StoreUnavailable

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class RoutingApiError(StoreUnavailable):
    """The Kubernetes API refused or failed a routing ConfigMap request (`status`: HTTP, 0 = none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class KubeApi:
    """A minimal Kubernetes API client: JSON requests with a bearer token over verified TLS."""

    def __init__(self, url: str, token_path: Path, ca_path: Path | None, timeout_s: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"Kubernetes API URL must be https://host[:port], got {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 443
        self._token_path = token_path
        self._tls = ssl.create_default_context(cafile=str(ca_path) if ca_path else None)
        self._timeout_s = timeout_s

    @classmethod
    def in_cluster(cls, url: str = "", sa_dir: Path = SA_DIR, timeout_s: float = 10.0) -> KubeApi:
        if not url:
            host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            if not host:
                raise ValueError("not in a cluster: KUBERNETES_SERVICE_HOST is unset (set the API URL)")
            url = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        return cls(url, sa_dir / "token", sa_dir / "ca.crt", timeout_s)

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        """The decoded JSON answer of a 2xx; RoutingApiError with the status otherwise."""
        token = self._token_path.read_text().strip()
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=self._timeout_s, context=self._tls)
        try:
            conn.request(method, path, body=data, headers=headers)
            reply = conn.getresponse()
            payload = reply.read()
        except (OSError, http.client.HTTPException) as err:
            raise RoutingApiError(f"Kubernetes API {method} {path}: {type(err).__name__}: {err}") from err
        finally:
            conn.close()
        if not 200 <= reply.status < 300:
            message = f"Kubernetes API {method} {path}: HTTP {reply.status}: {_reason(payload)}"
            raise RoutingApiError(message, reply.status)
        return json.loads(payload or b"{}")


def _reason(payload: bytes) -> str:
    try:
        return str(json.loads(payload).get("message", ""))[:300]
    except (ValueError, AttributeError):
        return payload[:300].decode("utf-8", "replace")


class ConfigMapRoutingStore:
    def __init__(self, api: KubeApi, namespace: str, name: str, key: str = "routing.yaml", attempts: int = 5) -> None:
        self._api = api
        self._path = f"/api/v1/namespaces/{quote(namespace, safe='')}/configmaps/{quote(name, safe='')}"
        self._key = key
        self._attempts = attempts

    def _get(self) -> tuple[dict[str, Any], str]:
        obj = self._api.request("GET", self._path)
        text = (obj.get("data") or {}).get(self._key)
        if text is None:
            raise RoutingApiError(f"ConfigMap {self._path} has no key {self._key!r}")
        return dict(yaml.safe_load(text) or {}), str(obj.get("metadata", {}).get("resourceVersion", ""))

    def read(self) -> dict[str, Any]:
        return self._get()[0]

    def rewrite(self, change: Change) -> bool:
        for _ in range(self._attempts):
            document, version = self._get()
            if not change(document):
                return False
            patch = {
                "metadata": {"resourceVersion": version},
                "data": {self._key: yaml.safe_dump(document, sort_keys=False)},
            }
            try:
                self._api.request("PATCH", self._path, patch, "application/merge-patch+json")
            except RoutingApiError as err:
                if err.status == 409:  # changed since read: read again, re-apply
                    continue
                raise
            return True
        raise RoutingApiError(f"ConfigMap {self._path}: still conflicting after {self._attempts} attempts")

    def __repr__(self) -> str:
        return f"ConfigMapRoutingStore({self._path!r}, key={self._key!r})"
