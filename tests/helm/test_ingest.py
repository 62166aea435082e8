"""The ingestion service in the chart: off by default; when on, a Deployment whose env maps onto
IngestSettings, the features registry ConfigMap mounted, egress to Kafka and Redis only."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from services.ingest.settings import IngestSettings
from tests.helm.chart import HelmRun, Manifest, env_of, find, main_container, one, pod_spec

Render = Callable[[str], list[Manifest]]
PREFIX = "PREDMESH_INGEST_"


def test_ingest_is_off_by_default(render: Render) -> None:
    assert not find(render("default"), "Deployment", "ingest")


def test_ingest_deployment(render: Render, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render("ingest")
    assert one(docs, "Deployment", "ingest")["spec"]["replicas"] == 2
    assert not find(docs, "Service", "ingest"), "health-only gRPC port: nothing calls it"
    container = main_container(docs, "ingest")
    assert container["command"] == ["python", "-m", "services.ingest.app"]
    env = env_of(container)
    features = env_of(main_container(docs, "features"))
    assert env[f"{PREFIX}REDIS_URL"] == features["PREDMESH_FEATURES_REDIS_URL"]
    assert env[f"{PREFIX}REGISTRY_PATH"] == features["PREDMESH_FEATURES_REGISTRY_PATH"]
    volumes = {v["name"]: v for v in pod_spec(docs, "ingest")["volumes"]}
    assert volumes["registry"] == {v["name"]: v for v in pod_spec(docs, "features")["volumes"]}["registry"]
    for name, value in env.items():
        if name.startswith(PREFIX):
            monkeypatch.setenv(name, value)
    settings = IngestSettings()
    assert (settings.topic, settings.dlq_topic, settings.group_id) == (
        "feature-events",
        "feature-events-dlq",
        "predmesh-ingest-eu",
    )
    assert (settings.batch_max_events, settings.max_future_s) == (1000, 60.0)
    assert settings.bootstrap_servers == "kafka:9092"


def test_ingest_network_policy(render: Render) -> None:
    policy = one(render("ingest"), "NetworkPolicy", "ingest")["spec"]
    assert policy["ingress"] == []
    ports = [[p["port"] for p in rule["ports"]] for rule in policy["egress"]]
    assert ports == [[9092], [6379]]  # Kafka, Redis; nothing else


def test_ingest_needs_the_registry_and_valid_values(helm_run: HelmRun) -> None:
    proc = helm_run.run(*helm_run.template_args(extra=["--set", "ingest.enabled=true"]))
    assert proc.returncode != 0 and "ingest.enabled needs features.registry" in proc.stderr
    for bad in ("ingest.batchMaxEvents=0", "ingest.maxFutureS=-1", "ingest.topicz=x"):
        proc = helm_run.run(*helm_run.template_args(["ingest.yaml"], extra=["--set", bad]))
        assert proc.returncode != 0, bad
