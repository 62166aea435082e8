"""The opt-in PrometheusRule: off by default; when on, every alert the issue names, thresholds from
values, Prometheus templates kept literal, and every metric it reads is one our services export."""

from __future__ import annotations

import re
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from predmesh.common.metrics import RpcMetrics
from services.gateway.metrics import GatewayMetrics
from services.logger.core.metrics import LoggerMetrics
from services.monitor.metrics import MonitorMetrics
from services.sink.metrics import SinkMetrics
from tests.helm.chart import HelmRun, Manifest, find

Render = Callable[[str], list[Manifest]]
ALERTS = {
    "PredmeshErrorRateHigh",
    "PredmeshDegradedRateHigh",
    "PredmeshLatencyP99AboveSlo",
    "PredmeshAsyncDeadLetters",
    "PredmeshDriftPsiHigh",
    "PredmeshFeatureDriftPsiHigh",
    "PredmeshRolloutRolledBack",
    "PredmeshRolloutEvidenceUnavailable",
    "PredmeshLoggerJournalBacklog",
    "PredmeshLoggerDeadLetters",
}


def _rules(docs: list[Manifest]) -> dict[str, Manifest]:
    [rule] = [d for d in docs if d["kind"] == "PrometheusRule"]
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def _exported() -> set[str]:
    """Sample names (with _total, _bucket...) of every registry our services expose."""
    registry = CollectorRegistry()
    RpcMetrics(registry)
    names: set[str] = set()
    registries = [registry, GatewayMetrics().registry, MonitorMetrics().registry, SinkMetrics().registry]
    logger = LoggerMetrics()
    registries.append(logger.registry)
    for reg in registries:
        for family in reg.collect():
            names.add(family.name)
            names.update(f"{family.name}{suffix}" for suffix in ("_total", "_bucket", "_count", "_sum"))
    return names


def test_no_rules_unless_enabled(render: Render) -> None:
    assert not [d for d in render("default") if d["kind"] == "PrometheusRule"]


def test_every_alert_with_thresholds_from_values(helm_run: HelmRun) -> None:
    docs = helm_run.template(["alerts.yaml"])
    [rule] = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rules = _rules(docs)
    assert set(rules) == ALERTS
    assert rules["PredmeshLatencyP99AboveSlo"]["expr"].strip().endswith("> 120")
    assert rules["PredmeshDriftPsiHigh"]["expr"].endswith("> 0.3")
    assert rules["PredmeshDriftPsiHigh"]["labels"]["retrain"] == "true"
    assert 'action="rollback"' in rules["PredmeshRolloutRolledBack"]["expr"]
    assert "{{ $labels.model }}" in rules["PredmeshDegradedRateHigh"]["annotations"]["summary"]
    exported = _exported()
    for name, r in rules.items():
        metrics = set(re.findall(r"\bpredmesh_[a-z0-9_]+", r["expr"]))
        assert metrics, name
        assert metrics <= exported, f"{name} reads metrics no service exports: {metrics - exported}"
    assert not find(docs, "PrometheusRule", "nothing-else")


def test_schema_rejects_bad_thresholds(helm_run: HelmRun) -> None:
    for bad in ("alerts.errorRate=2", "alerts.window=five", "alerts.surprise=1"):
        proc = helm_run.run(*helm_run.template_args(extra=["--set", "alerts.enabled=true", "--set", bad]))
        assert proc.returncode != 0, bad
