"""The rollout controller's evidence source in the chart: the analytics store by default; with
sink.rollout.evidence prometheus, env SinkSettings accepts (URL, timeout, selector, the
Authorization header from a Secret), egress to Prometheus, and guards (URL, the monitor's series)."""

from __future__ import annotations

import pytest

from services.sink.settings import SinkSettings
from tests.helm.chart import HelmRun, env_of, main_container, one

PROM = [
    "--set", "sink.rollout.evidence=prometheus",
    "--set", "sink.rollout.prometheus.url=https://mimir.monitoring:8080/prometheus",
    "--set", "sink.rollout.prometheus.timeoutS=3",
    "--set", 'sink.rollout.prometheus.selector=namespace="ml"',
    "--set", "sink.rollout.prometheus.authSecret.name=prom-auth",
    "--set", "networkPolicy.prometheus.ports={8080}",
]  # fmt: skip


def _settings(env: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> SinkSettings:
    for name, value in env.items():
        if name.startswith("PREDMESH_SINK_") and isinstance(value, str):
            monkeypatch.setenv(name, value)
    return SinkSettings()


def test_analytics_by_default(helm_run: HelmRun, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = helm_run.template(["rollout.yaml"])
    env = env_of(main_container(docs, "sink"))
    assert env["PREDMESH_SINK_ROLLOUT_EVIDENCE"] == "analytics" and "PREDMESH_SINK_PROMETHEUS_URL" not in env
    assert _settings(env, monkeypatch).rollout_evidence == "analytics"
    egress = one(docs, "NetworkPolicy", "sink")["spec"]["egress"]
    assert not any(p["port"] == 9090 for rule in egress for p in rule["ports"])


def test_prometheus_evidence(helm_run: HelmRun, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = helm_run.template(["rollout.yaml"], PROM)
    container = main_container(docs, "sink")
    raw = {e["name"]: e for e in container["env"]}
    assert raw["PREDMESH_SINK_PROMETHEUS_AUTH_HEADER"]["valueFrom"]["secretKeyRef"] == {
        "name": "prom-auth",
        "key": "authorization",
    }
    settings = _settings(env_of(container), monkeypatch)
    assert settings.rollout_evidence == "prometheus"
    assert settings.prometheus_url == "https://mimir.monitoring:8080/prometheus"
    assert settings.prometheus_timeout_s == 3.0 and settings.prometheus_selector == 'namespace="ml"'
    egress = one(docs, "NetworkPolicy", "sink")["spec"]["egress"]
    assert {"ports": [{"protocol": "TCP", "port": 8080}]} in egress  # networkPolicy.prometheus (to: [] = any)
    no_secret = helm_run.template(["rollout.yaml"], [*PROM, "--set", "sink.rollout.prometheus.authSecret.name="])
    assert "PREDMESH_SINK_PROMETHEUS_AUTH_HEADER" not in env_of(main_container(no_secret, "sink"))


def test_prometheus_evidence_guards(helm_run: HelmRun) -> None:
    cases = {
        "sink.rollout.prometheus.url is required": ["--set", "sink.rollout.prometheus.url="],
        "set monitor.enabled=true": ["--set", "monitor.enabled=false"],
        "evidence": ["--set", "sink.rollout.evidence=graphite"],
        "url": ["--set", "sink.rollout.prometheus.url=prometheus:9090"],
        "timeoutS": ["--set", "sink.rollout.prometheus.timeoutS=0"],
    }
    for message, extra in cases.items():
        proc = helm_run.run(*helm_run.template_args(["rollout.yaml"], [*PROM, *extra]))
        assert proc.returncode != 0 and message in proc.stderr, (extra, proc.stderr[-500:])
