"""The drift monitor in the chart: Deployment, env mapped onto MonitorSettings, model repository,
network policy, disruption budget, opt-out."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from services.monitor.settings import MonitorSettings
from tests.helm.chart import (
    RELEASE,
    HelmRun,
    Manifest,
    env_of,
    find,
    main_container,
    one,
    pod_spec,
    workload,
)

Render = Callable[[str], list[Manifest]]
PREFIX = "PREDMESH_MONITOR_"


def _edges(rule: Manifest) -> list[int]:
    return [p["port"] for p in rule["ports"]]


def test_monitor_deployment_defaults(render: Render) -> None:
    docs = render("default")
    deployment = one(docs, "Deployment", "monitor")
    assert deployment["spec"]["replicas"] == 1
    assert not find(docs, "HorizontalPodAutoscaler", "monitor"), "one consumer per group: no autoscaling"
    assert one(docs, "PodDisruptionBudget", "monitor")["spec"]["maxUnavailable"] == 1
    container = main_container(docs, "monitor")
    assert container["command"] == ["python", "-m", "services.monitor.app"]
    env = env_of(container)
    logger = env_of(main_container(docs, "logger"))
    assert env[f"{PREFIX}BOOTSTRAP_SERVERS"] == logger["PREDMESH_LOGGER_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env[f"{PREFIX}TOPIC"] == logger["PREDMESH_LOGGER_TOPIC"] == "predictions"
    assert env[f"{PREFIX}GROUP_ID"] == "predmesh-monitor"
    assert (
        env[f"{PREFIX}MODEL_REPOSITORY"]
        == env_of(main_container(docs, "inference"))["PREDMESH_INFERENCE_MODEL_REPOSITORY"]
    )
    assert (env[f"{PREFIX}WINDOW_S"], env[f"{PREFIX}MIN_EVENTS"], env[f"{PREFIX}PSI_ALERT"]) == ("300", "100", "0.25")
    spec = pod_spec(docs, "monitor")
    assert spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == pod_spec(docs, "gateway")["serviceAccountName"]


def test_monitor_env_is_accepted_by_monitor_settings(render: Render, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in env_of(main_container(render("observability"), "monitor")).items():
        if name.startswith(PREFIX):
            monkeypatch.setenv(name, value)
    settings = MonitorSettings()
    assert settings.topic == "shadow-predictions"
    assert settings.group_id == "predmesh-monitor-shadow"
    assert (settings.window_s, settings.min_events, settings.psi_alert) == (600.0, 50, 0.2)
    assert settings.model_repository == Path("/models")
    assert settings.metrics_port == 9464
    assert settings.otlp_endpoint == "otel-collector.observability:4317"
    assert settings.trace_sample_ratio == 0.2


def test_monitor_reads_references_from_the_model_repository(render: Render) -> None:
    docs = render("observability")  # models on a PVC
    spec = pod_spec(docs, "monitor")
    assert {
        "name": "models",
        "persistentVolumeClaim": {"claimName": "predmesh-models", "readOnly": True},
    } in spec["volumes"]
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "models")
    assert mount == {"name": "models", "mountPath": "/models", "readOnly": True, "subPath": "repo"}
    assert env_of(spec["containers"][0])[f"{PREFIX}MODEL_REPOSITORY"] == mount["mountPath"]
    # Object storage: the same init container as the orchestrator's, and egress to the bucket.
    synced = render("gpu-keda")
    assert [c["name"] for c in pod_spec(synced, "monitor")["initContainers"]] == ["fetch-models"]
    policy = one(synced, "NetworkPolicy", "monitor")["spec"]
    assert any(443 in _edges(rule) for rule in policy["egress"])


def test_monitor_network_policy(render: Render) -> None:
    policy = one(render("observability"), "NetworkPolicy", "monitor")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    # Ingress: only the configured scrapers, only on the metrics port (probes come from the kubelet).
    [scrape] = policy["ingress"]
    assert scrape["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert _edges(scrape) == [9464]
    # Egress: Kafka and the trace collector, nothing else (DNS comes from the release-wide policy).
    assert [_edges(rule) for rule in policy["egress"]] == [[9092], [4317]]
    assert "podSelector" not in str(policy["egress"])


def test_monitor_can_be_disabled(helm_run: HelmRun) -> None:
    docs = helm_run.template(extra=["--set", "monitor.enabled=false"])
    assert not [d for d in docs if d["metadata"]["name"] == f"{RELEASE}-predmesh-monitor"]
    assert workload(docs, "logger"), "the rest of the mesh still renders"


def test_schema_rejects_bad_monitor_values(helm_run: HelmRun) -> None:
    for bad in ("monitor.windowS=0", "monitor.minEvents=0", "monitor.psiAlert=0", "monitor.windowz=1"):
        proc = helm_run.run(*helm_run.template_args(extra=["--set", bad]))
        assert proc.returncode != 0, bad
        assert "/monitor" in proc.stderr or "windowz" in proc.stderr, proc.stderr


def test_retrain_webhook_env_and_egress(helm_run: HelmRun, monkeypatch: pytest.MonkeyPatch) -> None:
    off = env_of(main_container(helm_run.template(), "monitor"))
    assert not [k for k in off if k.startswith(f"{PREFIX}RETRAIN_WEBHOOK_")], "no URL: no webhook settings"
    extra = [
        "--set", "monitor.retrainWebhook.url=https://ml.example.com/hooks/retrain",
        "--set", "monitor.retrainWebhook.allowedHosts={ml.example.com,10.8.0.0/16}",
        "--set", "monitor.retrainWebhook.horizonS=900",
        "--set", "networkPolicy.retrainWebhook.ports={443,8443}",
    ]  # fmt: skip
    docs = helm_run.template(extra=extra)
    env = env_of(main_container(docs, "monitor"))
    for name, value in env.items():
        if name.startswith(PREFIX):
            monkeypatch.setenv(name, value)
    settings = MonitorSettings()
    assert settings.retrain_webhook_url == "https://ml.example.com/hooks/retrain"
    assert settings.retrain_webhook_allowed_hosts == ["ml.example.com", "10.8.0.0/16"]
    assert (settings.retrain_webhook_horizon_s, settings.retrain_webhook_cooldown_s) == (900.0, 3600.0)
    assert settings.retrain_webhook_ports == "443,1024-65535" and settings.retrain_webhook_timeout_ms == 5000
    policy = one(docs, "NetworkPolicy", "monitor")["spec"]
    assert [_edges(rule) for rule in policy["egress"]] == [[9092], [443, 8443]]


def test_schema_rejects_bad_retrain_webhook_values(helm_run: HelmRun) -> None:
    for bad in (
        "monitor.retrainWebhook.url=ftp://x/y",
        "monitor.retrainWebhook.horizonS=0",
        "monitor.retrainWebhook.ports=abc",
        "monitor.retrainWebhook.retries=3",
    ):
        proc = helm_run.run(*helm_run.template_args(extra=["--set", bad]))
        assert proc.returncode != 0, bad
        assert "retrainWebhook" in proc.stderr or "retries" in proc.stderr, proc.stderr
