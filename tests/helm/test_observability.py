"""Metrics and tracing rendered the same way for every Python service (ServerSettings), with
scrape annotations, network edges to scrapers and the collector, and Envoy tracing to the same
collector."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import yaml

from services.controlplane.core.config import MeshConfig
from tests.helm.chart import (
    PYTHON_SERVICES,
    HelmRun,
    Manifest,
    env_of,
    find,
    main_container,
    one,
    workload,
)

Render = Callable[[str], list[Manifest]]
SERVICES = {**PYTHON_SERVICES, "ort-worker": "PREDMESH_ORTWORKER_"}
EXPECTED = {  # value set -> (OTLP_ENDPOINT, TRACE_SAMPLE_RATIO)
    "default": ("", "1"),
    "observability": ("otel-collector.observability:4317", "0.2"),
}


def _services(docs: list[Manifest]) -> dict[str, str]:
    return {c: p for c, p in SERVICES.items() if [d for d in docs if d["metadata"]["name"].endswith(f"-{c}")]}


def _ports(rules: list[Manifest]) -> set[int]:
    return {p["port"] for rule in rules for p in rule["ports"]}


@pytest.mark.parametrize("value_set", sorted(EXPECTED))
def test_every_python_service_serves_metrics_and_traces_alike(render: Render, value_set: str) -> None:
    docs = render(value_set)
    services = _services(docs)
    assert set(PYTHON_SERVICES) <= set(services)
    for component, prefix in services.items():
        container = main_container(docs, component)
        env = env_of(container)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        annotations = workload(docs, component)["spec"]["template"]["metadata"]["annotations"]
        assert env[f"{prefix}METRICS_PORT"] == str(ports["metrics"]) == annotations["prometheus.io/port"], component
        assert ports["metrics"] == 9464 and ports["metrics"] != ports["grpc"], component
        assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
        assert (env[f"{prefix}OTLP_ENDPOINT"], env[f"{prefix}TRACE_SAMPLE_RATIO"]) == EXPECTED[value_set], component


def test_envoy_and_triton_scrape_annotations(render: Render) -> None:
    docs = render("gpu-keda")
    envoy = workload(docs, "envoy")["spec"]["template"]["metadata"]["annotations"]
    assert (envoy["prometheus.io/port"], envoy["prometheus.io/path"]) == ("8002", "/stats/prometheus")
    assert "checksum/envoy-bootstrap" in envoy
    triton = workload(docs, "triton")["spec"]["template"]["metadata"]["annotations"]
    assert (triton["prometheus.io/port"], triton["prometheus.io/path"]) == ("8002", "/metrics")


def test_metrics_and_annotations_can_be_turned_off(helm_run: HelmRun) -> None:
    docs = helm_run.template(extra=["--set", "metrics.enabled=false"])
    for component, prefix in _services(docs).items():
        container = main_container(docs, component)
        assert f"{prefix}METRICS_PORT" not in env_of(container), component
        assert [p["name"] for p in container["ports"]] == ["grpc"], component
        assert "prometheus.io/scrape" not in workload(docs, component)["spec"]["template"]["metadata"].get(
            "annotations", {}
        )
    assert "prometheus.io/scrape" in workload(docs, "envoy")["spec"]["template"]["metadata"]["annotations"]
    quiet = helm_run.template(extra=["--set", "metrics.scrapeAnnotations=false"])
    for doc in quiet:
        if doc["kind"] == "Deployment":
            annotations = doc["spec"]["template"]["metadata"].get("annotations", {})
            assert not [k for k in annotations if k.startswith("prometheus.io/")], doc["metadata"]["name"]
    assert "PREDMESH_GATEWAY_METRICS_PORT" in env_of(main_container(quiet, "gateway"))


def test_network_policies_open_scraping_and_the_collector(render: Render) -> None:
    docs = render("observability")
    for component in _services(docs):
        spec = one(docs, "NetworkPolicy", component)["spec"]
        scrape = [r for r in spec["ingress"] if 9464 in _ports([r])]
        assert scrape and all("namespaceSelector" in r["from"][0] for r in scrape), component
        otlp = [r for r in spec["egress"] if 4317 in _ports([r])]
        assert [r["to"] for r in otlp] == [
            [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}}]
        ], component
    assert 4317 in _ports(one(docs, "NetworkPolicy", "envoy")["spec"]["egress"])
    # Defaults: no scrapers configured, no collector -> neither edge exists.
    for policy in find(render("default"), "NetworkPolicy"):
        spec = policy["spec"]
        assert 4317 not in _ports(spec.get("egress", [])), policy["metadata"]["name"]
        assert 9464 not in _ports(spec.get("ingress", [])), policy["metadata"]["name"]


def test_envoy_traces_to_the_services_collector(render: Render) -> None:
    def mesh(value_set: str) -> Manifest:
        return yaml.safe_load(one(render(value_set), "ConfigMap", "controlplane-mesh")["data"]["mesh.yaml"])

    assert "tracing" not in mesh("default")
    tracing = mesh("observability")["tracing"]
    assert tracing == {"collector": "otel-collector.observability:4317", "sampling_percent": 20}
    assert MeshConfig.parse(mesh("observability")).tracing.collector == tracing["collector"]


def test_metrics_port_must_differ_from_grpc_ports(helm_run: HelmRun) -> None:
    proc = helm_run.run(*helm_run.template_args(extra=["--set", "metrics.port=50056"]))
    assert proc.returncode != 0
    assert "metrics.port (50056) must differ from monitor.port" in proc.stderr
    proc = helm_run.run(*helm_run.template_args(extra=["--set", "tracing.otlpEndpoint=http://collector:4317"]))
    assert proc.returncode != 0 and "/tracing/otlpEndpoint" in proc.stderr
