"""Read a service's Prometheus `/metrics` endpoint over HTTP, as tests assert on it."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Metrics = dict[tuple[str, tuple[tuple[str, str], ...]], float]  # (name, sorted labels) -> value


def scrape(port: int, host: str = "127.0.0.1") -> Metrics:
    """Every sample of http://host:port/metrics (blocking; run it in a thread from async code)."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
