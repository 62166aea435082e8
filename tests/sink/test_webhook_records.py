"""Retraining-webhook calls recorded in the analytics store: the drift monitor app detects drift and
calls a real local webhook (retried), each call's record goes through a real tansu broker into the
sink's real embedded ClickHouse, and `predmesh analytics query` and `predmesh report` show it."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from predmesh.cli import main
from predmesh.common.callback_policy import CallbackPolicy
from predmesh.local.kafka import DEV_CONSUMER_TIMEOUTS, TansuBroker, create_topics
from predmesh.report.collect import webhook_rows
from predmesh.report.data import ReportData
from predmesh.report.page import render
from services.monitor.app import MonitorApp
from services.monitor.core.reference import compute_reference, save_reference
from services.monitor.core.retrain import DriftEvent
from services.monitor.core.windows import Observation
from services.monitor.settings import MonitorSettings
from services.monitor.transport.webhook import RetrainWebhook
from services.sink.app import SinkApp
from services.sink.settings import SinkSettings
from tests.monitor.test_retrain_webhook import Hook


@pytest.fixture
def hooks() -> Iterator[list[Hook]]:
    made: list[Hook] = []
    yield made
    for h in made:
        h.close()


def _query(target: str, sql: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert main(["analytics", "query", sql, "--format", "json", "--target", target, "--state-dir", "/nonexistent"]) == 0
    return list(json.loads(capsys.readouterr().out))


async def test_webhook_calls_land_in_the_store(
    tansu: TansuBroker, tmp_path: Path, hooks: list[Hook], capsys: pytest.CaptureFixture[str]
) -> None:
    suffix = uuid.uuid4().hex[:8]
    topic = f"retrain-webhooks-{suffix}"
    await asyncio.to_thread(create_topics, tansu.bootstrap_servers, [topic, f"predictions-{suffix}"])
    hook = Hook([503, 503])  # two retried failures, then 200
    hooks.append(hook)
    rng = random.Random(5)
    (tmp_path / "models" / "wh" / "2").mkdir(parents=True)
    save_reference(compute_reference([rng.random() * 0.5 for _ in range(1000)]), tmp_path / "models" / "wh" / "2")
    monitor = MonitorApp(
        MonitorSettings(
            bootstrap_servers=tansu.bootstrap_servers,
            model_repository=tmp_path / "models",
            min_events=50,
            retrain_webhook_url=hook.url,
            retrain_webhook_allowed_hosts=["127.0.0.1/32"],
            retrain_webhook_backoff_initial_ms=20,
            retrain_webhook_horizon_s=5,
            webhook_topic=topic,
        )
    )
    assert monitor.recorder is not None and monitor.recorder.topic == topic
    now = time.time()
    for _ in range(200):  # live scores far above the training ones: score drift
        monitor.monitor.observe(Observation("wh", "2", now, 3.0, False, 0.6 + rng.random() * 0.4))
    [stats] = await monitor.evaluate()
    assert stats.score_psi is not None and stats.score_psi > 0.25
    # a call whose URL the SSRF policy refuses, and one answered 400 (not retried), recorded the same way
    policy = CallbackPolicy(["127.0.0.1/32"])
    refused = RetrainWebhook("http://10.0.0.1:8080/x", policy, lambda _m, _d: None, on_outcome=monitor.recorder.record)
    bad = Hook([400])
    hooks.append(bad)
    rejected = RetrainWebhook(bad.url, policy, lambda _m, _d: None, on_outcome=monitor.recorder.record)
    assert await refused.deliver(DriftEvent("wh", "1", now, 0.25, None, {"amount": 0.7}, "refused-1")) is False
    assert await rejected.deliver(DriftEvent("wh", "1", now, 0.25, 0.3, {}, "rejected-1")) is False
    deadline = time.monotonic() + 15
    while len(hook.requests) < 3:
        assert time.monotonic() < deadline, hook.requests
        await asyncio.sleep(0.02)

    sink = SinkApp(
        SinkSettings(
            port=0,
            grace_s=0.1,
            bootstrap_servers=tansu.bootstrap_servers,
            topics=[f"predictions-{suffix}"],
            webhook_topic=topic,
            group_id=f"sink-{suffix}",
            kafka_extra=DEV_CONSUMER_TIMEOUTS,
            chdb_path=tmp_path / "analytics",
            batch_max_rows=64,
            batch_max_wait_ms=50,
        )
    )
    await sink.start()
    try:
        assert sink.server is not None and sink.consumer is not None and sink.store is not None
        target = sink.server.address
        sql = "SELECT count() AS n FROM predmesh.retrain_webhooks FINAL"
        while (await asyncio.to_thread(_query, target, sql, capsys))[0]["n"] < 3:
            assert time.monotonic() < deadline + 30, sink.consumer.stats
            await asyncio.sleep(0.2)
        rows = await asyncio.to_thread(
            _query,
            target,
            "SELECT delivery_id, model, model_version, status, attempts, http_status, error, score_psi, "
            "max_feature_psi, psi_alert, drifted, feature_psi FROM predmesh.retrain_webhooks FINAL ORDER BY ts",
            capsys,
        )
        by_status = {r["status"]: r for r in rows}
        assert set(by_status) == {"delivered", "refused", "failed"}
        delivered = by_status["delivered"]
        body = json.loads(hook.requests[-1][2])
        assert delivered["delivery_id"] == body["delivery_id"] == hook.requests[0][1]["Idempotency-Key"]
        assert (delivered["model"], delivered["model_version"], delivered["attempts"]) == ("wh", "2", 3)
        assert (delivered["http_status"], delivered["error"], delivered["drifted"]) == (200, "", "score")
        assert delivered["score_psi"] == pytest.approx(stats.score_psi)
        assert delivered["max_feature_psi"] is None and delivered["psi_alert"] == 0.25
        assert by_status["refused"]["attempts"] == 0 and "URL refused" in by_status["refused"]["error"]
        assert by_status["refused"]["delivery_id"] == "refused-1" and by_status["refused"]["score_psi"] is None
        assert json.loads(by_status["refused"]["feature_psi"]) == {"amount": 0.7}
        assert by_status["refused"]["max_feature_psi"] == 0.7 and by_status["refused"]["drifted"] == "amount"
        failed = by_status["failed"]
        assert (failed["attempts"], failed["http_status"], failed["error"]) == (1, 400, "HTTP 400 (not retried)")

        # the report shows them (rows from the same store, the page's table)
        report = ReportData(model="wh", generated_s=time.time())
        store = sink.store
        report.webhooks = webhook_rows(lambda q: store.query(q).dicts(), "predmesh", "wh", 0.0)
        assert sorted((w.status, w.attempts, w.version) for w in report.webhooks) == [
            ("delivered", 3, "2"),
            ("failed", 1, "1"),
            ("refused", 0, "1"),
        ]
        page = render(report)
        assert page.count('<tr class="webhook ') == 3 and 'id="table-webhooks"' in page
    finally:
        await sink.stop()
