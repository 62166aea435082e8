"""The retraining webhook against a real local HTTP server: retried with back-off until delivered,
counted as failed when the target stays down or is refused by the SSRF policy, and fired by the
monitor app's evaluation when a version drifts."""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from predmesh.common.callback_policy import CallbackPolicy
from services.monitor.app import MonitorApp
from services.monitor.core.reference import compute_reference, save_reference
from services.monitor.core.retrain import DriftEvent, DriftTrigger, backoff_delays
from services.monitor.core.windows import Observation, WindowStats
from services.monitor.metrics import MonitorMetrics
from services.monitor.settings import MonitorSettings
from services.monitor.transport.webhook import RetrainWebhook


class Hook:
    """A real HTTP server on loopback answering `statuses` in turn (then 200), recording requests."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                hook.requests.append((self.path, dict(self.headers), body))
                self.send_response(hook.statuses.pop(0) if hook.statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/retrain?team=risk"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook_factory() -> Iterator[list[Hook]]:
    hooks: list[Hook] = []
    yield hooks
    for h in hooks:
        h.close()


def _event() -> DriftEvent:
    return DriftEvent("fraud", "2", 1_790_000_000.0, 0.25, 0.41, {"amount": 0.3, "age": 0.01})


def _webhook(url: str, metrics: MonitorMetrics, allowed: list[str], horizon_s: float = 5.0) -> RetrainWebhook:
    return RetrainWebhook(
        url,
        CallbackPolicy(allowed),
        metrics.webhook_result,
        timeout_s=2.0,
        initial_backoff_s=0.02,
        max_backoff_s=0.1,
        horizon_s=horizon_s,
        rng=random.Random(1),
    )


def _count(metrics: MonitorMetrics, result: str) -> float:
    value = metrics.registry.get_sample_value(
        "predmesh_monitor_retrain_webhooks_total", {"model": "fraud", "result": result}
    )
    return value or 0.0


async def test_first_attempts_fail_then_delivered(hook_factory: list[Hook]) -> None:
    hook = Hook([503, 502, 429])
    hook_factory.append(hook)
    metrics = MonitorMetrics()
    event = _event()
    assert await _webhook(hook.url, metrics, ["127.0.0.1/32"]).deliver(event) is True
    assert len(hook.requests) == 4
    assert {path for path, _h, _b in hook.requests} == {"/retrain?team=risk"}
    assert {h["Idempotency-Key"] for _p, h, _b in hook.requests} == {event.delivery_id}
    body = json.loads(hook.requests[-1][2])
    assert body["model"] == "fraud" and body["version"] == "2" and body["delivery_id"] == event.delivery_id
    assert body["drifted"] == ["score", "amount"] and body["score_psi"] == 0.41
    assert (_count(metrics, "delivered"), _count(metrics, "failed")) == (1, 0)


async def test_target_down_until_the_horizon_counts_failed(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    metrics = MonitorMetrics()
    caplog.set_level(logging.INFO, "services.monitor.transport.webhook")
    webhook = _webhook(f"http://127.0.0.1:{port}/hook", metrics, ["127.0.0.0/8"], horizon_s=0.3)
    assert await webhook.deliver(_event()) is False
    assert (_count(metrics, "delivered"), _count(metrics, "failed")) == (0, 1)
    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    [final] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(retries) >= 2 and "after" in final.getMessage() and "attempts" in final.getMessage()


async def test_permanent_answer_is_not_retried(hook_factory: list[Hook]) -> None:
    hook = Hook([400])
    hook_factory.append(hook)
    metrics = MonitorMetrics()
    assert await _webhook(hook.url, metrics, ["127.0.0.1/32"]).deliver(_event()) is False
    assert len(hook.requests) == 1 and _count(metrics, "failed") == 1


async def test_ssrf_policy_refuses_internal_address_without_a_cidr_entry(hook_factory: list[Hook]) -> None:
    hook = Hook([])
    hook_factory.append(hook)
    metrics = MonitorMetrics()
    # loopback is internal: allowed by an IP/CIDR entry, refused when only the host name is listed
    assert await _webhook(hook.url, metrics, ["127.0.0.1"]).deliver(_event()) is True
    assert await _webhook(hook.url.replace("127.0.0.1", "localhost"), metrics, ["localhost"]).deliver(_event()) is False
    assert await _webhook("ftp://127.0.0.1:2121/x", metrics, ["127.0.0.1/32"]).deliver(_event()) is False
    assert len(hook.requests) == 1
    assert (_count(metrics, "delivered"), _count(metrics, "failed")) == (1, 2)


def test_trigger_fires_once_per_cooldown_per_version() -> None:
    def stats(version: str, score_psi: float | None, features: dict[str, float]) -> WindowStats:
        return WindowStats("fraud", version, 200, 1.0, {}, 0.0, score_psi, features, 200)

    trigger = DriftTrigger(cooldown_s=60)
    calm, drifted = stats("1", 0.05, {"amount": 0.1}), stats("2", 0.05, {"amount": 0.4})
    [event] = trigger.fire([calm, drifted], 0.25, 1000.0)
    assert (event.version, event.drifted) == ("2", ["amount"])
    assert trigger.fire([calm, drifted], 0.25, 1030.0) == []  # still drifted, inside the cooldown
    assert [e.version for e in trigger.fire([calm, drifted], 0.25, 1061.0)] == ["2"]
    assert trigger.fire([stats("3", None, {})], 0.25, 2000.0) == []  # no PSI (no reference): nothing


def test_backoff_is_jittered_exponential_up_to_the_horizon() -> None:
    delays = list(backoff_delays(1.0, 8.0, 30.0, random.Random(4)))
    caps = [min(8.0, 2.0**i) for i in range(len(delays))]
    assert all(0 <= d <= c for d, c in zip(delays, caps, strict=True))
    assert sum(delays) <= 30.0 and len(set(delays)) == len(delays)
    assert sum(delays) + 8.0 > 30.0 or len(delays) > 5  # it stops only near the horizon


async def test_monitor_app_calls_the_webhook_when_a_version_drifts(tmp_path: Path, hook_factory: list[Hook]) -> None:
    hook = Hook([500])
    hook_factory.append(hook)
    rng = random.Random(7)
    save_reference(compute_reference([rng.random() * 0.5 for _ in range(1000)]), _mkdir(tmp_path / "fraud" / "2"))
    settings = MonitorSettings(
        model_repository=tmp_path,
        min_events=50,
        retrain_webhook_url=hook.url,
        retrain_webhook_allowed_hosts=["127.0.0.1/32"],
        retrain_webhook_backoff_initial_ms=20,
        retrain_webhook_horizon_s=5,
        webhook_topic="",  # not recorded here (tests/sink/test_webhook_records.py records through Kafka)
    )
    app = MonitorApp(settings)
    assert app.recorder is None
    now = time.time()
    for _ in range(200):  # live scores far above the training ones
        app.monitor.observe(Observation("fraud", "2", now, 3.0, False, 0.6 + rng.random() * 0.4))
    [stats] = await app.evaluate()
    assert stats.score_psi is not None and stats.score_psi > settings.psi_alert
    deadline = time.monotonic() + 10
    while _count(app.metrics, "delivered") < 1:
        assert time.monotonic() < deadline, hook.requests
        await asyncio.sleep(0.02)
    assert len(hook.requests) == 2 and json.loads(hook.requests[1][2])["version"] == "2"


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path
