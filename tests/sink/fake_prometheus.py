"""A small fake Prometheus HTTP query API on loopback: records each `/api/v1/query` request (query,
time, Authorization header) and answers what the test queued, in the real API's JSON format
(https://prometheus.io/docs/prometheus/latest/querying/api/: `status`, `data.resultType`,
`data.result` with string sample values such as "NaN"), or an HTTP error with its JSON body."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

Answer = tuple[int, Any]  # HTTP status, JSON body (a str body is sent as is)


def vector(*series: tuple[dict[str, str], str], at_s: float = 1700000000.0) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": m, "value": [at_s, v]} for m, v in series]},
    }


def matrix(*series: tuple[dict[str, str], list[str]], at_s: float = 1700000000.0) -> dict[str, Any]:
    result = [{"metric": m, "values": [[at_s - len(vs) + i, v] for i, v in enumerate(vs)]} for m, vs in series]
    return {"status": "success", "data": {"resultType": "matrix", "result": result}}


class FakePrometheus:
    def __init__(self, answer: Callable[[str], Answer]) -> None:
        self.answer = answer  # query -> (status, body)
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                params = {k: v[0] for k, v in parse_qs(parts.query).items()}
                fake.requests.append({"path": parts.path, "auth": self.headers.get("Authorization"), **params})
                status, body = fake.answer(params.get("query", ""))
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def queries(self) -> list[str]:
        return [r["query"] for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
