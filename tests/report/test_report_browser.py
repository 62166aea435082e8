"""`predmesh report` end to end: rows in a real embedded ClickHouse, served by a real
AnalyticsService gRPC server, a real monitor /metrics over HTTP, the CLI writing the HTML, and a
real headless Chromium rendering it. The numbers on the charts are compared with the ones this
test computes from the rows it inserted (counts, PSI, p99, rates, AUC, rollout weights)."""

from __future__ import annotations

import asyncio
import bisect
import http.server
import json
import math
import random
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
from prometheus_client import generate_latest
from sklearn.metrics import roc_auc_score

from predmesh.cli import main
from predmesh.v1 import analytics_pb2_grpc
from services.monitor.core.reference import compute_reference, save_reference
from services.monitor.core.windows import WindowStats
from services.monitor.metrics import MonitorMetrics
from services.sink.backends.chdb_store import ChdbStore
from services.sink.core.rows import event_row
from services.sink.core.schema import (
    DECISION_COLUMNS,
    OUTCOME_COLUMNS,
    PREDICTION_COLUMNS,
    WEBHOOK_COLUMNS,
)
from services.sink.transport.servicer import AnalyticsServicer
from tests.report.browser import Elements, dump_dom, png_pixels, screenshot
from tests.sink.support import outcome, prediction

pytestmark = pytest.mark.integration  # drives a Chromium process (tests/report/browser.py)

MODEL = "rep"
T0 = 1_790_000_000.0  # fixed timestamps: rates are exact


class Arm:
    def __init__(
        self, version: str, arm: str, scores: list[float], latencies: list[float], degraded: int, step_s: float
    ):
        self.version, self.arm, self.scores, self.latencies = version, arm, scores, latencies
        self.degraded, self.step_s = degraded, step_s
        self.labels: list[float] = []

    @property
    def key(self) -> str:
        return f"{self.version}/{self.arm}"

    def events(self) -> list:
        return [
            prediction(
                f"{self.key}-{i}",
                MODEL,
                self.version,
                self.arm,
                s,
                latency_ms=lat,
                degraded=i < self.degraded,
                at_s=T0 + i * self.step_s,
            )
            for i, (s, lat) in enumerate(zip(self.scores, self.latencies, strict=True))
        ]


def _psi(fractions: list[float], edges: list[float], scores: list[float]) -> float:
    counts = [0] * len(fractions)
    for s in scores:
        counts[bisect.bisect_right(edges[1:-1], s)] += 1
    total = sum(counts)
    return sum(
        (max(c / total, 1e-4) - max(e, 1e-4)) * math.log(max(c / total, 1e-4) / max(e, 1e-4))
        for c, e in zip(counts, fractions, strict=True)
    )


def _serve_metrics(text: bytes) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


async def test_report_charts_rendered_by_chromium_match_the_rows(store: ChdbStore, tmp_path: Path) -> None:
    rng = random.Random(20)
    stable = Arm(
        "1",
        "stable",
        [rng.betavariate(2, 5) for _ in range(300)],
        [float(rng.randint(2, 40)) for _ in range(300)],
        degraded=3,
        step_s=0.2,
    )
    canary = Arm(
        "2",
        "canary",
        [min(1.0, rng.betavariate(5, 2)) for _ in range(100)],
        [float(rng.randint(10, 90)) for _ in range(100)],
        degraded=5,
        step_s=0.5,
    )
    events = stable.events() + canary.events()
    for arm, n_out in ((stable, 200), (canary, 80)):
        arm.labels = [1.0 if rng.random() < s else 0.0 for s in arm.scores[:n_out]]
        events += [outcome(f"{arm.key}-{i}", MODEL, y) for i, y in enumerate(arm.labels)]
    rows = [r for r in (event_row(e) for e in events) if r is not None]
    store.insert("predictions", PREDICTION_COLUMNS, [r.values for r in rows if r.table == "predictions"])
    store.insert("outcomes", OUTCOME_COLUMNS, [r.values for r in rows if r.table == "outcomes"])
    decisions = [  # what the rollout controller records (start at 10 %, promote to 50 %, roll back)
        (T0 + 1, "start", 0, 10.0, "rollout of 2 started at 10%", {"canary_weight_after": 10.0}),
        (T0 + 31, "promote", 0, 10.0, "step 0 passed: canary 10% -> 50%", {"canary_weight_after": 50.0}),
        (T0 + 45, "rollback", 1, 50.0, "failed: p99_latency_ms", {}),  # older rows: no weight after
    ]
    store.insert(
        "rollout_decisions",
        DECISION_COLUMNS,
        [
            (ts, MODEL, "1", "2", step, w, action, reason, json.dumps(ev))
            for ts, action, step, w, reason, ev in decisions
        ],
    )
    # the drift monitor's retraining-webhook calls (delivered after retries; one failed), another model's
    store.insert(
        "retrain_webhooks",
        WEBHOOK_COLUMNS,
        [
            ("d1", MODEL, "1", T0 + 50, T0 + 52, 0.25, 0.41, 0.31, '{"amount": 0.31}', "score,amount", 3, "delivered",
             200, "", T0 + 53),
            ("d2", MODEL, "1", T0 + 60, T0 + 61, 0.25, 0.38, None, "{}", "score", 1, "failed", 400,
             "HTTP 400 (not retried)", T0 + 62),
            ("d3", "other", "1", T0 + 60, T0 + 61, 0.25, 0.9, None, "{}", "score", 1, "delivered", 200, "", T0 + 62),
        ],
    )  # fmt: skip
    # training reference of version 1 (a distribution the live scores drifted from); none for version 2
    training = [rng.betavariate(2, 3) for _ in range(2000)]
    reference = compute_reference(training)
    (tmp_path / "models" / MODEL / "1").mkdir(parents=True)
    save_reference(reference, tmp_path / "models" / MODEL / "1")
    # the drift monitor's gauges, served over HTTP like its /metrics
    monitor = MonitorMetrics()
    feature_psi = {"amount": 0.31, "txn_count_1h": 0.04}
    monitor.update(
        [
            WindowStats(MODEL, "1", 300, 1.0, {0.5: 5.0}, 0.0, 0.12, feature_psi, 300),
            WindowStats("other", "1", 10, 1.0, {}, 0.0, 0.9, {"amount": 0.9}, 10),
        ],
        psi_alert=0.25,
    )
    http_server = _serve_metrics(generate_latest(monitor.registry))
    server = grpc.aio.server()
    analytics_pb2_grpc.add_AnalyticsServiceServicer_to_server(AnalyticsServicer(store, 10_000), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    out = tmp_path / "report.html"
    try:
        rc = await asyncio.to_thread(
            main,
            [
                "report",
                MODEL,
                "--out",
                str(out),
                "--target",
                f"127.0.0.1:{port}",
                "--state-dir",
                str(tmp_path / "state"),
                "--model-repository",
                str(tmp_path / "models"),
                "--monitor-url",
                f"http://127.0.0.1:{http_server.server_address[1]}/metrics",
            ],
        )
    finally:
        await server.stop(None)
        http_server.shutdown()
    assert rc == 0
    html = out.read_text()
    for external in ("src=", "href=", "http://", "https://", "@import", "url("):  # self-contained
        assert external not in html

    dom = Elements(await asyncio.to_thread(dump_dom, out, tmp_path / "profile"))
    values = [a for _, a in dom.items if "data-value" in a]
    [body] = dom.find("body")
    assert int(body["data-rendered"]) == len(values) > 0  # the page's script measured every drawn value
    for a in values:
        if a.get("class") == "bar":
            assert float(a["data-rendered-h"]) >= 0

    def bars(chart: str) -> dict[tuple[str, str], dict[str, str]]:
        return {(a["data-group"], a["data-series"]): a for a in dom.find("rect", class_="bar", data_chart=chart)}

    # score distribution: one bar per non-empty (bin, version/arm), height proportional to the count
    expected: dict[tuple[str, str], int] = {}
    for arm in (stable, canary):
        for s in arm.scores:
            b = f"{min(math.floor(s * 10), 9) / 10:.1f}"
            expected[(b, arm.key)] = expected.get((b, arm.key), 0) + 1
    score_bars = bars("chart-scores")
    assert {k: int(float(a["data-value"])) for k, a in score_bars.items()} == expected
    per_unit = {round(float(a["data-rendered-h"]) / float(a["data-value"]), 2) for a in score_bars.values()}
    assert max(per_unit) - min(per_unit) < 0.02 and min(per_unit) > 0  # drawn to one scale by the browser

    # drift: score PSI from the store vs reference.json, plus the monitor's gauges of this model only
    drift = {k: float(a["data-value"]) for k, a in bars("chart-drift").items()}
    want_psi = _psi(list(reference.score.fractions), list(reference.score.edges), stable.scores)
    assert drift.pop(("score", "1 (store)")) == pytest.approx(want_psi, rel=1e-9)
    assert drift == pytest.approx(
        {("score", "1 (monitor)"): 0.12, **{(f, "1 (monitor)"): v for f, v in feature_psi.items()}}
    )
    [line] = dom.find("line", class_="threshold")
    assert float(line["data-value"]) == 0.25

    # canary vs stable
    for chart, want in (
        ("chart-rate", {a.key: len(a.scores) / ((len(a.scores) - 1) * a.step_s) for a in (stable, canary)}),
        ("chart-p99", {a.key: float(np.percentile(a.latencies, 99)) for a in (stable, canary)}),
        ("chart-bad", {a.key: a.degraded / len(a.scores) for a in (stable, canary)}),
        ("chart-auc", {a.key: roc_auc_score(a.labels, a.scores[: len(a.labels)]) for a in (stable, canary)}),
    ):
        got = {series: float(a["data-value"]) for (_g, series), a in bars(chart).items()}
        assert got == pytest.approx(want, rel=1e-3), chart

    # rollout history: one point per decision, at the canary weight after it
    points = dom.find("circle", class_="point", data_chart="chart-rollout")
    assert [(p["data-kind"], float(p["data-value"]), float(p["data-x"])) for p in points] == [
        ("start", 10.0, 0.0),
        ("promote", 50.0, 30.0),
        ("rollback", 0.0, 44.0),
    ]
    assert len(dom.find("tr", class_="rollback")) == 1

    # retraining webhook calls of this model, with their attempts and final status
    assert len(dom.find("tr", class_="webhook delivered")) == 1 and len(dom.find("tr", class_="webhook failed")) == 1
    assert "HTTP 400 (not retried)" in html and "score,amount" in html

    # the screenshot shows the charts: not blank, and the first series' color is drawn
    pixels = png_pixels(await asyncio.to_thread(screenshot, out, tmp_path / "profile", tmp_path / "shot.png"))
    white = np.all(pixels == 255, axis=2).mean()
    assert white < 0.97, f"screenshot {white:.1%} white"
    assert np.all(pixels == (0x1F, 0x77, 0xB4), axis=2).sum() > 500  # bars of 1/stable
    assert np.all(pixels == (0xFF, 0x7F, 0x0E), axis=2).sum() > 200  # bars of 2/canary
