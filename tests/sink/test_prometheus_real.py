"""The rollout controller's Prometheus evidence against a real Prometheus (Debian's 2.42, unpacked by
./dev setup) scraping the drift monitor's real per-arm series (services/monitor/metrics.py): the
PromQL parses and evaluates on the real engine, and a slower canary is rolled back on it."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client import start_http_server

from predmesh.common.rollout import rollouts
from predmesh.local.procs import free_port, wait_until
from predmesh.local.prometheus import PrometheusServer
from services.monitor.core.windows import Observation
from services.monitor.metrics import MonitorMetrics
from services.sink.backends.chdb_store import ChdbStore
from services.sink.backends.prometheus_api import PrometheusApi
from services.sink.core.controller import RolloutController
from services.sink.core.evidence import AnalyticsEvidence, PrometheusEvidence


@pytest.fixture
def scraped(tmp_path: Path) -> Iterator[tuple[MonitorMetrics, PrometheusServer]]:
    metrics = MonitorMetrics()
    port = free_port()
    server, _thread = start_http_server(port, "127.0.0.1", metrics.registry)
    prometheus = PrometheusServer([f"127.0.0.1:{port}"], scrape_interval_s=0.5, workdir=tmp_path / "prom")
    try:
        prometheus.start()
        yield metrics, prometheus
    finally:
        prometheus.stop()
        server.shutdown()
        server.server_close()


def _total(prometheus: PrometheusServer) -> float:
    result = prometheus.query("sum(predmesh_monitor_predictions_total)")["data"]["result"]  # type: ignore[index]
    return float(result[0]["value"][1]) if result else -1.0


def test_a_slower_canary_is_rolled_back_on_real_prometheus_evidence(
    scraped: tuple[MonitorMetrics, PrometheusServer], store: ChdbStore, tmp_path: Path
) -> None:
    metrics, prometheus = scraped
    started = time.time() - 1.0
    metrics.observe(Observation("rp", "1", started, 4.0, False, 0.5, arm="stable"))  # each arm's series ...
    metrics.observe(Observation("rp", "2", started, 30.0, False, 0.5, arm="canary"))
    wait_until(lambda: _total(prometheus) == 2.0, 15.0, "first scrape")  # ... scraped before the traffic
    for i in range(400):
        metrics.observe(Observation("rp", "1", started, 4.0, i % 100 == 0, 0.5, arm="stable"))
    for i in range(200):
        metrics.observe(Observation("rp", "2", started, 30.0, i % 10 == 0, 0.5, arm="canary"))
    metrics.observe(Observation("rp", "2", started, 1.0, False, 0.5, arm="pinned"))  # not an arm of the rollout
    wait_until(lambda: _total(prometheus) == 603.0, 15.0, "scrape of the traffic")
    time.sleep(1.2)  # two more scrapes: less extrapolation in increase()

    path = tmp_path / "routing.yaml"
    route = {
        "versions": [{"version": "1", "weight": 80}, {"version": "2", "weight": 20}],
        "rollout": {"canary": "2", "steps": [20, 100], "min_duration_s": 3600, "min_requests": 100,
                    "max_bad_rate": 0.5, "step_started_s": started},
    }  # fmt: skip
    path.write_text(yaml.safe_dump({"models": {"rp": route}}, sort_keys=False))
    source = PrometheusEvidence(PrometheusApi(prometheus.url, 5.0).query, AnalyticsEvidence(store))
    controller = RolloutController(store, path, evidence=source)
    evidence = controller.evidence("rp", "1", rollouts(yaml.safe_load(path.read_text()))["rp"])
    stable, canary = evidence.stable, evidence.canary
    # the first scraped value is not an increase; increase() extrapolates a little past the samples
    assert 400 <= stable.n <= 800 and 200 <= canary.n <= 400
    assert canary.bad_rate is not None and math.isclose(canary.bad_rate, 0.1, rel_tol=0.02)
    # the degraded="true" series existed (at 0) since the arm's first answer: its first increase counts
    # (the series extrapolate slightly differently towards the window start: a ratio within 2%)
    assert stable.bad_rate is not None and math.isclose(stable.bad_rate, 0.01, rel_tol=0.02)
    assert stable.p99_ms is not None and 2.0 < stable.p99_ms <= 5.0  # inside the (2, 5] ms bucket
    assert canary.p99_ms is not None and 20.0 < canary.p99_ms <= 50.0  # inside the (20, 50] ms bucket
    [(_, decision)] = controller.evaluate_once()
    assert decision.action == "rollback" and decision.reason == "failed: p99_latency_ms"
    doc = yaml.safe_load(path.read_text())
    assert doc["models"]["rp"]["versions"] == [{"version": "1", "weight": 100.0}]
    assert decision.evidence["criteria"]["p99_latency_ms"]["source"] == "prometheus"
