"""A small fake Kubernetes API server over real HTTPS (loopback): ConfigMap GET and merge PATCH.

It checks what the real API server would for the rollout controller's calls: the bearer token,
RBAC limited to get/patch of the named ConfigMaps (others: 403), and the optimistic-concurrency
rule of a patch carrying `metadata.resourceVersion` (stale: 409 Conflict). `bump_before_patch`
simulates someone else (`helm upgrade`, kubectl) changing the object between a read and a patch.
No cluster exists on this machine: this is what the ConfigMap adapter is tested against.
"""

from __future__ import annotations

import http.server
import json
import re
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from predmesh.local.pki import LocalCA

_PATH = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/configmaps/(?P<name>[^/?]+)$")


class FakeKubeApi:
    def __init__(self, directory: Path, token: str, allowed: set[tuple[str, str]]) -> None:
        ca = LocalCA(directory / "pki", "fake kube CA")
        cert = ca.issue("apiserver", ["127.0.0.1"])
        self.ca_path = ca.cert_path
        self.token = token
        self.allowed = allowed  # (namespace, name) the service account may get/patch
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, Any] | None]] = []
        self.bump_before_patch: Callable[[dict[str, Any]], None] | None = None
        self._lock = threading.Lock()
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length)) if length else None
                api.requests.append((method, self.path, body))
                status, answer = api.handle(method, self.path, self.headers, body)
                self._answer(status, answer)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def do_PUT(self) -> None:
                self._handle("PUT")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert.cert, cert.key)
        self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def put(self, namespace: str, name: str, data: dict[str, str]) -> None:
        with self._lock:
            old = self.objects.get((namespace, name))
            version = int(old["metadata"]["resourceVersion"]) + 1 if old else 1
            self.objects[(namespace, name)] = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": namespace, "resourceVersion": str(version)},
                "data": dict(data),
            }

    def handle(self, method: str, path: str, headers: Any, body: Any) -> tuple[int, dict[str, Any]]:
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"kind": "Status", "message": "Unauthorized"}
        match = _PATH.match(path)
        if match is None:
            return 404, {"kind": "Status", "message": "not found"}
        key = (match["ns"], match["name"])
        verb = {"GET": "get", "PATCH": "patch"}.get(method)
        if verb is None or key not in self.allowed:
            return 403, {"kind": "Status", "message": f"cannot {method.lower()} configmaps {key[1]}"}
        if key not in self.objects:
            return 404, {"kind": "Status", "message": f"configmaps {key[1]} not found"}
        if method == "GET":
            return 200, self.objects[key]
        if headers.get("Content-Type") != "application/merge-patch+json":
            return 415, {"kind": "Status", "message": "unsupported patch type"}
        if self.bump_before_patch is not None:
            bump, self.bump_before_patch = self.bump_before_patch, None
            bump(self.objects[key])
        with self._lock:
            current = self.objects[key]
            wanted = (body.get("metadata") or {}).get("resourceVersion")
            if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
                return 409, {"kind": "Status", "message": "the object has been modified", "reason": "Conflict"}
            current["data"].update(body.get("data") or {})
            current["metadata"]["resourceVersion"] = str(int(current["metadata"]["resourceVersion"]) + 1)
            return 200, current

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
