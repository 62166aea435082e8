"""Retraining-webhook call records in the chart: with the monitor's webhook and the sink, the monitor
produces each call's record to sink.topics.retrainWebhooks (SASL config also for its producer), the
sink consumes it, and the topic is provisioned; without one of them nothing is produced or consumed."""

from __future__ import annotations

import json

import pytest

from services.monitor.settings import MonitorSettings
from services.sink.settings import SinkSettings
from tests.helm.chart import HelmRun, env_of, find, main_container

HOOK = ["--set", "monitor.retrainWebhook.url=https://retrain.example.com/hook"]
PROVISION = ["--set", "kafka.provisioning.enabled=true"]


def _apply(env: dict[str, object], prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in env.items():
        if name.startswith(prefix) and isinstance(value, str):
            monkeypatch.setenv(name, value)


def test_monitor_records_and_sink_stores(helm_run: HelmRun, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = [*HOOK, *PROVISION, "--set", "kafka.clientConfigSecret.name=kafka-client"]
    docs = helm_run.template(["sink.yaml"], extra)
    monitor = env_of(main_container(docs, "monitor"))
    sink = env_of(main_container(docs, "sink"))
    assert monitor["PREDMESH_MONITOR_WEBHOOK_TOPIC"] == sink["PREDMESH_SINK_WEBHOOK_TOPIC"] == "retrain-webhooks"
    assert isinstance(monitor["PREDMESH_MONITOR_PRODUCER_EXTRA"], dict)  # SASL config for its producer too
    _apply(monitor, "PREDMESH_MONITOR_", monkeypatch)
    _apply(sink, "PREDMESH_SINK_", monkeypatch)
    assert MonitorSettings().webhook_topic == "retrain-webhooks" and SinkSettings().webhook_topic == "retrain-webhooks"
    (job,) = find(docs, "Job", "kafka-topics")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    spec = {t["name"]: t for t in json.loads(env_of(container)["PREDMESH_TOPICS_SPEC"])}
    assert spec["retrain-webhooks"]["partitions"] == 1 and spec["retrain-webhooks"]["role"] == "retrainWebhooks"


def test_nothing_recorded_without_webhook_or_sink(helm_run: HelmRun) -> None:
    no_hook = helm_run.template(["sink.yaml"], PROVISION)
    assert env_of(main_container(no_hook, "sink"))["PREDMESH_SINK_WEBHOOK_TOPIC"] == ""
    (job,) = find(no_hook, "Job", "kafka-topics")
    assert "retrain-webhooks" not in env_of(job["spec"]["template"]["spec"]["containers"][0])["PREDMESH_TOPICS_SPEC"]
    no_sink = helm_run.template([], HOOK)
    assert env_of(main_container(no_sink, "monitor"))["PREDMESH_MONITOR_WEBHOOK_TOPIC"] == ""
