"""The analytics sink in the chart: off by default; on, a Deployment whose env SinkSettings accepts
(ClickHouse server backend, password from the named Secret), its network edges and its guards."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from services.sink.settings import SinkSettings
from tests.helm.chart import HelmRun, Manifest, find, main_container, one

Render = Callable[[str], list[Manifest]]
PREFIX = "PREDMESH_SINK_"


def test_no_sink_by_default(render: Render) -> None:
    assert not find(render("default"), "Deployment", "sink")


def test_sink_on_a_clickhouse_server(helm_run: HelmRun, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = helm_run.template(["sink.yaml"])
    assert one(docs, "Deployment", "sink")["spec"]["replicas"] == 1
    container = main_container(docs, "sink")
    assert container["command"] == ["python", "-m", "services.sink.app"]
    env = {e["name"]: e for e in container["env"]}
    assert env[f"{PREFIX}CLICKHOUSE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "clickhouse-auth", "key": "pw"}
    for name, entry in env.items():
        if name.startswith(PREFIX) and "value" in entry:
            monkeypatch.setenv(name, entry["value"])
    settings = SinkSettings()
    assert settings.backend == "clickhouse"
    assert settings.clickhouse_url == "http://clickhouse.analytics:8123" and settings.clickhouse_user == "predmesh"
    assert settings.topics == ["predictions", "shadow-predictions", "outcomes"]
    assert settings.routing_path is None  # no rollout controller on a read-only ConfigMap
    policy = one(docs, "NetworkPolicy", "sink")["spec"]
    ports = sorted(p["port"] for rule in policy["egress"] for p in rule["ports"])
    assert ports == [8123, 9092]
    assert [r for r in policy["ingress"] if not any(p["port"] == 9464 for p in r["ports"])] == []
    assert one(docs, "PodDisruptionBudget", "sink")


def test_sink_needs_a_url_and_a_secret(helm_run: HelmRun) -> None:
    for extra in (
        ["--set", "sink.enabled=true"],
        ["--set", "sink.enabled=true", "--set", "sink.clickhouse.url=http://ch:8123"],
    ):
        proc = helm_run.run(*helm_run.template_args(extra=extra))
        assert proc.returncode != 0 and "required when sink.enabled" in proc.stderr
