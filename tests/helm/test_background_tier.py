"""The background tier in the chart (backgroundTier, off by default): a gateway of its own that the
edge never routes to runs the batch-job and async workers against features and inference
Deployments of its own, and the edge's gateways hand those workers over. Same configuration and
security as the real-time twins; its own replicas, resources, priority and placement; mTLS
identities and network policies that keep the tiers apart."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from services.features.settings import FeaturesSettings
from services.gateway.settings import GatewaySettings
from services.inference.settings import InferenceSettings
from services.logger.settings import LoggerSettings
from services.ortworker.settings import OrtWorkerSettings
from tests.helm.chart import (
    BASE,
    NAMESPACE,
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
PREFIX = "PREDMESH_GATEWAY_"
TWINS = {"gateway-bg": "gateway", "features-bg": "features", "inference-bg": "inference"}  # tier -> real-time
WORK = ("--set", "asyncQueue.enabled=true", "--set", "batchJobs.enabled=true")
ROOTS = ("--set", "batchJobs.allowedRoots={s3://scoring/jobs/}")
ON = (*WORK, *ROOTS, "--set", "backgroundTier.enabled=true")
MTLS = ("--set", "mtls.enabled=true", "--set", "mtls.certManager.issuerRef.name=mesh-ca")
CLIENT_TLS = (
    "--set", "redis.url=rediss://redis:6380/0",
    "--set", "redis.tls.secretName=redis-ca",
    "--set", "kafka.clientConfigSecret.name=kafka-sasl",
    "--set", "kafka.caSecret=kafka-ca",
    "--set", "tracing.otlpEndpoint=otel:4317",
    "--set", "tracing.tls.caSecret=otel-ca",
)  # fmt: skip
SCRAPERS = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


def gateway_settings(env: dict[str, Any]) -> GatewaySettings:
    """GatewaySettings as a gateway pod reads them from its (plain-valued) env."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            if name.startswith(PREFIX):
                assert isinstance(value, str), name
                patch.setenv(name, value)
        return GatewaySettings()


def allowed(settings: type[BaseSettings], method: str) -> list[str]:
    """Identities a service admits to `method` by default (its `allowed_clients`)."""
    rules = settings.model_fields["allowed_clients"].get_default(call_default_factory=True)
    return list(rules[method])


def dns_target(component: str, port: int) -> str:
    return f"dns:///{RELEASE}-predmesh-{component}-headless.{NAMESPACE}.svc:{port}"


def pod_labels(docs: list[Manifest], component: str) -> dict[str, str]:
    return dict(workload(docs, component)["spec"]["template"]["metadata"]["labels"])


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


def json_sets(*pairs: tuple[str, Any]) -> list[str]:
    """`--set-json key=value` arguments."""
    return [arg for key, value in pairs for arg in ("--set-json", f"{key}={json.dumps(value)}")]


def external_ports(policy: Manifest) -> list[list[int]]:
    """Ports of the egress rules open to any destination (`to: []`: Redis, Kafka by default)."""
    return [[p["port"] for p in rule["ports"]] for rule in policy.get("egress", []) if "to" not in rule]


def peer_edges(policy: Manifest, direction: str) -> set[tuple[str, int]]:
    """(component, port) pairs of the pod peers of a NetworkPolicy's ingress or egress rules."""
    key = "from" if direction == "ingress" else "to"
    return {
        (peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"], port["port"])
        for rule in policy.get(direction, [])
        for peer in rule.get(key, [])
        if "podSelector" in peer
        for port in rule["ports"]
    }


# --- off by default ---------------------------------------------------------------------------


def test_off_by_default_renders_nothing_new_and_the_edge_keeps_its_workers(helm_run: HelmRun) -> None:
    docs = helm_run.template((BASE,), (*WORK, *ROOTS))
    components = {d["metadata"].get("labels", {}).get("app.kubernetes.io/component") for d in docs}
    assert not components & set(TWINS)
    assert not [d["metadata"]["name"] for d in docs if d["metadata"]["name"].endswith(("-bg", "-bg-headless"))]
    env = env_of(main_container(docs, "gateway"))
    assert PREFIX + "BATCH_WORKER" not in env and PREFIX + "ASYNC_WORKER" not in env
    settings = gateway_settings(env)
    assert settings.batch_worker and settings.async_worker  # every edge gateway runs both (the defaults)
    assert settings.features_target == dns_target("features", 50052)


# --- workers, targets, configuration ----------------------------------------------------------


def test_the_tier_gateway_runs_the_workers_against_its_own_backends(render: Render) -> None:
    docs = render("background")
    edge = gateway_settings(env_of(main_container(docs, "gateway")))
    tier = gateway_settings(env_of(main_container(docs, "gateway-bg")))
    assert (edge.batch_worker, edge.async_worker) == (False, False)
    assert (tier.batch_worker, tier.async_worker) == (True, True)
    assert (edge.features_target, edge.inference_target) == (
        dns_target("features", 50052),
        dns_target("inference", 50053),
    )
    assert (tier.features_target, tier.inference_target) == (
        dns_target("features-bg", 50052),
        dns_target("inference-bg", 50053),
    )
    # The targets are the tier's own Services: they select the tier's pods, never the real-time ones.
    for component in ("features-bg", "inference-bg"):
        for service in (component, f"{component}-headless"):
            selector = one(docs, "Service", service)["spec"]["selector"]
            assert selects(selector, pod_labels(docs, component)), service
            assert not selects(selector, pod_labels(docs, TWINS[component])), service
    # Submit/poll on the edge, scoring on the tier: one job store, one queue, one routing table.
    assert tier.async_redis_url == edge.async_redis_url == "redis://redis-master:6379/0"
    assert (tier.async_kafka_bootstrap, tier.async_requests_topic) == (
        edge.async_kafka_bootstrap,
        edge.async_requests_topic,
    )
    assert tier.async_consumer_group == edge.async_consumer_group
    assert tier.batch_allowed_roots == edge.batch_allowed_roots == ["s3://scoring/jobs/"]
    assert tier.routing_path == edge.routing_path and tier.logger_target == edge.logger_target != ""
    assert tier.batch_chunk_rows == 8192 and edge.batch_chunk_rows != 8192  # backgroundTier.gateway.env
    assert tier.drain_delay_s == 0 and edge.drain_delay_s > 0  # no Envoy health-checks the tier out


def test_the_tier_has_the_real_time_configuration(helm_run: HelmRun) -> None:
    """Env, mounts, volumes and the pod checksums equal the twin's but for the targets, the worker
    switches and the drain delay: feature registry, bounded model pool (routing table), per-service
    client TLS (Redis for features, Kafka for the async gateway)."""
    registry = ("--set-json", 'features.registry={"entities":{"user":{"features":{"spend":{"dtype":"float"}}}}}')
    pool = ("--set", "inference.modelPool.maxModels=3")
    docs = helm_run.template((BASE, "background.yaml"), (*CLIENT_TLS, *registry, *pool))
    differ = {
        "gateway-bg": {
            PREFIX + "FEATURES_TARGET",
            PREFIX + "INFERENCE_TARGET",
            PREFIX + "BATCH_WORKER",
            PREFIX + "ASYNC_WORKER",
            PREFIX + "DRAIN_DELAY_S",
            PREFIX + "BATCH_CHUNK_ROWS",
        },
        "features-bg": set(),
        "inference-bg": set(),
    }
    for component, twin in TWINS.items():
        container, real_time = main_container(docs, component), main_container(docs, twin)
        env = {k: v for k, v in env_of(container).items() if k not in differ[component]}
        twin_env = {k: v for k, v in env_of(real_time).items() if k not in differ[component]}
        assert env == twin_env, component
        assert container["command"] == real_time["command"], component
        assert container["volumeMounts"] == real_time["volumeMounts"], component
        assert pod_spec(docs, component)["volumes"] == pod_spec(docs, twin)["volumes"], component
        assert pod_spec(docs, component).get("initContainers") == pod_spec(docs, twin).get("initContainers")
        annotations = workload(docs, component)["spec"]["template"]["metadata"].get("annotations")
        assert annotations == workload(docs, twin)["spec"]["template"]["metadata"].get("annotations"), component
    volumes = {v["name"]: v for v in pod_spec(docs, "features-bg")["volumes"]}
    assert volumes["registry"]["configMap"]["name"] == one(docs, "ConfigMap", "features-registry")["metadata"]["name"]
    assert env_of(main_container(docs, "inference-bg"))["PREDMESH_INFERENCE_POOL_MAX_MODELS"] == "3"
    assert env_of(main_container(docs, "features-bg"))["PREDMESH_FEATURES_REDIS_TLS_CA_PATH"]
    kafka_extra = env_of(main_container(docs, "gateway-bg"))[PREFIX + "ASYNC_KAFKA_EXTRA"]
    assert kafka_extra == {"secretKeyRef": {"name": "kafka-sasl", "key": "kafka-extra"}}


def test_the_tier_pods_are_as_locked_down_as_their_twins(render: Render) -> None:
    docs = render("background")
    for component, twin in TWINS.items():
        spec, real_time = pod_spec(docs, component), pod_spec(docs, twin)
        for key in ("securityContext", "serviceAccountName", "automountServiceAccountToken", "enableServiceLinks"):
            assert spec[key] == real_time[key], (component, key)
        assert spec["containers"][0]["securityContext"] == real_time["containers"][0]["securityContext"]
        assert spec["automountServiceAccountToken"] is False


# --- the edge never reaches the tier's gateway ------------------------------------------------


def test_the_edge_does_not_route_to_the_tier_gateway(render: Render) -> None:
    docs = render("background")
    labels = pod_labels(docs, "gateway-bg")
    # Envoy's gateway endpoints are the EndpointSlices of the edge gateways' Service; no Service at
    # all selects the tier's gateway (nothing calls it; kubelet probes the pod's port).
    mesh = yaml.safe_load(one(docs, "ConfigMap", "controlplane-mesh")["data"]["mesh.yaml"])
    assert {name: c["kubernetes"]["service"] for name, c in mesh["clusters"].items()} == {
        "gateway": f"{RELEASE}-predmesh-gateway"
    }
    assert selects(one(docs, "Service", "gateway")["spec"]["selector"], pod_labels(docs, "gateway"))
    for service in find(docs, "Service"):
        assert not selects(service["spec"].get("selector", {}), labels), service["metadata"]["name"]
    envoy = one(docs, "NetworkPolicy", "envoy")["spec"]
    assert peer_edges(envoy, "egress") == {("gateway", 50051), ("controlplane", 18000)}
    ingress = one(docs, "NetworkPolicy", "gateway-bg")["spec"]["ingress"]
    assert ingress == [{"from": SCRAPERS, "ports": [{"protocol": "TCP", "port": 9464}]}]  # only scrapers


# --- replicas, resources, priority, placement ------------------------------------------------


def test_resources_priority_and_placement_land_in_the_pod_specs(render: Render) -> None:
    docs = render("background")
    toleration = {"key": "dedicated", "operator": "Equal", "value": "background", "effect": "NoSchedule"}
    for component, twin in TWINS.items():
        spec, real_time = pod_spec(docs, component), pod_spec(docs, twin)
        assert spec["priorityClassName"] == "predmesh-background", component
        assert spec["nodeSelector"] == {"pool": "background"}, component
        assert spec["tolerations"] == [toleration], component
        for key in ("priorityClassName", "nodeSelector", "tolerations"):
            assert key not in real_time, (twin, key)
    affinity = pod_spec(docs, "inference-bg")["affinity"]["podAntiAffinity"]
    term = affinity["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["labelSelector"]["matchLabels"] == {"app.kubernetes.io/component": "inference-bg"}
    replicas = {component: workload(docs, component)["spec"]["replicas"] for component in TWINS}
    assert replicas == {"gateway-bg": 2, "features-bg": 1, "inference-bg": 3}
    hpa_targets = {h["spec"]["scaleTargetRef"]["name"] for h in find(docs, "HorizontalPodAutoscaler")}
    assert not hpa_targets & {workload(docs, component)["metadata"]["name"] for component in TWINS}


def test_default_resources_weigh_the_tier_below_real_time(helm_run: HelmRun) -> None:
    """A small CPU request (the cgroup CPU weight), no CPU limit (idle CPU is used), the twin's memory;
    no priority class or placement unless set."""
    docs = helm_run.template((BASE,), ON)
    for component, twin in TWINS.items():
        resources = main_container(docs, component)["resources"]
        real_time = main_container(docs, twin)["resources"]
        assert resources["requests"]["cpu"] == "100m", component
        assert "cpu" not in resources["limits"], component
        assert resources["requests"]["memory"] == real_time["requests"]["memory"], component
        assert resources["limits"]["memory"] == real_time["limits"]["memory"], component
        spec = pod_spec(docs, component)
        assert not {"priorityClassName", "nodeSelector", "tolerations", "affinity"} & set(spec), component
        assert workload(docs, component)["spec"]["replicas"] == 1


def test_disruption_budgets(helm_run: HelmRun) -> None:
    docs = helm_run.template((BASE,), ON)
    names = {d["metadata"]["name"] for d in find(docs, "PodDisruptionBudget")}
    assert {f"{RELEASE}-predmesh-{c}" for c in TWINS.values()} <= names
    assert not {f"{RELEASE}-predmesh-{c}" for c in TWINS} & names  # the tier yields by default
    docs = helm_run.template((BASE,), (*ON, "--set", "backgroundTier.inference.pdb.enabled=true"))
    pdb = one(docs, "PodDisruptionBudget", "inference-bg")["spec"]
    assert pdb["maxUnavailable"] == 1
    assert selects(pdb["selector"]["matchLabels"], pod_labels(docs, "inference-bg"))
    assert not selects(pdb["selector"]["matchLabels"], pod_labels(docs, "inference"))


# --- mutual TLS -------------------------------------------------------------------------------


def test_mtls_identities_of_the_tier(helm_run: HelmRun) -> None:
    docs = helm_run.template((BASE, "background.yaml"), MTLS)
    certs = {d["metadata"]["name"]: d["spec"] for d in find(docs, "Certificate")}
    identity = {}
    for component, twin in TWINS.items():
        name = f"{RELEASE}-predmesh-{component}"
        spec = certs[f"{name}-tls"]
        assert spec["secretName"] == f"{name}-tls"
        assert spec["issuerRef"]["name"] == "mesh-ca"
        identity[component] = spec["dnsNames"][0]
        assert identity[component] == twin  # the identity the services' allow-lists name
        assert f"{name}-headless.{NAMESPACE}.svc" in spec["dnsNames"]
        volumes = {v["name"]: v for v in pod_spec(docs, component)["volumes"]}
        assert volumes["mesh-tls"]["secret"]["secretName"] == f"{name}-tls"
        container = main_container(docs, component)
        prefix = f"PREDMESH_{twin.upper()}_"
        assert env_of(container)[f"{prefix}TLS_CERT_PATH"] == "/etc/predmesh/tls/tls.crt"
        assert container["readinessProbe"]["grpc"] == {"port": 8086}  # plaintext health-only port
    # Each server the tier's gateway dials presents the name it dials...
    tier = env_of(main_container(docs, "gateway-bg"))
    for key, component in (("FEATURES_TARGET", "features-bg"), ("INFERENCE_TARGET", "inference-bg")):
        host = tier[PREFIX + key].removeprefix("dns:///").rsplit(":", 1)[0]
        assert host in certs[f"{RELEASE}-predmesh-{component}-tls"]["dnsNames"]
    # ...and each service the tier calls admits the tier's identity (by default).
    assert identity["gateway-bg"] in allowed(FeaturesSettings, "/predmesh.v1.FeatureService/*")
    assert identity["gateway-bg"] in allowed(InferenceSettings, "/predmesh.v1.InferenceService/*")
    assert identity["gateway-bg"] in allowed(LoggerSettings, "/predmesh.v1.LoggerService/*")
    assert identity["inference-bg"] in allowed(OrtWorkerSettings, "/inference.GRPCInferenceService/*")


# --- network policies -------------------------------------------------------------------------


def test_network_policies_keep_the_tiers_apart(helm_run: HelmRun) -> None:
    docs = helm_run.template((BASE, "gpu-keda.yaml", "background.yaml"))

    def policy(component: str) -> Manifest:
        return dict(one(docs, "NetworkPolicy", component)["spec"])

    def edges(component: str, direction: str) -> set[tuple[str, int]]:
        return peer_edges(policy(component), direction)

    # The tier's gateway: called by nobody; calls its own backends, the logger, Redis and Kafka.
    assert edges("gateway-bg", "ingress") == set()
    assert edges("gateway-bg", "egress") == {("features-bg", 50052), ("inference-bg", 50053), ("logger", 50054)}
    assert external_ports(policy("gateway-bg")) == [[6379], [9092]]  # Redis, Kafka (`to: []` = any)
    assert external_ports(policy("gateway")) == [[6379], [9092]]  # submissions and status: same stores
    # The tier's backends admit only the tier's gateway; the real-time ones only the edge's gateways.
    assert edges("features-bg", "ingress") == {("gateway-bg", 50052)}
    assert edges("inference-bg", "ingress") == {("gateway-bg", 50053)}
    assert edges("features", "ingress") == {("gateway", 50052)}
    assert edges("inference", "ingress") == {("gateway", 50053)}
    assert edges("gateway", "egress") == {("features", 50052), ("inference", 50053), ("logger", 50054)}
    # Besides those callers, only scrapers, on the metrics port.
    for component in TWINS:
        others = [rule for rule in policy(component)["ingress"] if not peer_edges({"ingress": [rule]}, "ingress")]
        assert others == [{"from": SCRAPERS, "ports": [{"protocol": "TCP", "port": 9464}]}], component
    # Shared pieces admit both tiers' callers; the backends reach what their twins reach.
    assert edges("logger", "ingress") == {("gateway", 50054), ("gateway-bg", 50054)}
    assert edges("ort-worker", "ingress") == {("inference", 50055), ("inference-bg", 50055)}
    assert edges("triton", "ingress") == {("inference", 8001), ("inference-bg", 8001)}
    assert policy("features-bg")["egress"] == policy("features")["egress"]
    assert policy("inference-bg")["egress"] == policy("inference")["egress"]  # ORT, Triton, object storage
    # The release's default deny covers the tier's pods too.
    deny = one(docs, "NetworkPolicy", "default-deny")["spec"]["podSelector"]["matchLabels"]
    assert all(selects(deny, pod_labels(docs, component)) for component in TWINS)


def test_gateways_reach_redis_and_kafka_only_when_their_settings_use_them(helm_run: HelmRun) -> None:
    def gateway_egress(*extra: str, files: tuple[str, ...] = (BASE,)) -> list[list[int]]:
        return external_ports(one(helm_run.template(files, extra), "NetworkPolicy", "gateway")["spec"])

    assert gateway_egress() == []
    assert gateway_egress("--set", "asyncQueue.enabled=true") == [[6379], [9092]]
    assert gateway_egress(*WORK[2:], *ROOTS) == [[6379]]  # batch jobs: Redis only
    assert gateway_egress(files=(BASE, "cache.yaml")) == [[6379]]  # the shared prediction cache


def test_extra_egress_follows_the_work_extra_ingress_does_not(helm_run: HelmRun) -> None:
    hooks = {"ports": [{"protocol": "TCP", "port": 443}]}
    ingress_controller = {"from": [{"namespaceSelector": {}}], "ports": [{"protocol": "TCP", "port": 50051}]}
    tier_only = {"ports": [{"protocol": "TCP", "port": 8443}]}
    extra = json_sets(
        ("networkPolicy.extraEgress", {"gateway": [hooks], "gateway-bg": [tier_only]}),
        ("networkPolicy.extraIngress", {"gateway": [ingress_controller]}),
    )
    docs = helm_run.template((BASE,), (*ON, *extra))
    edge = one(docs, "NetworkPolicy", "gateway")["spec"]
    tier = one(docs, "NetworkPolicy", "gateway-bg")["spec"]
    assert hooks in tier["egress"] and tier_only in tier["egress"]  # callbacks, job files: the tier's work
    assert hooks in edge["egress"] and tier_only not in edge["egress"]
    assert ingress_controller in edge["ingress"] and tier["ingress"] == []


# --- refused values, names --------------------------------------------------------------------


def test_the_tier_without_background_work_is_refused(helm_run: HelmRun) -> None:
    proc = helm_run.run(*helm_run.template_args(extra=["--set", "backgroundTier.enabled=true"]))
    assert proc.returncode != 0
    assert "backgroundTier.enabled needs batchJobs.enabled or asyncQueue.enabled" in proc.stderr
    tier = ["--set", "backgroundTier.enabled=true", "--set", "asyncQueue.enabled=true"]
    assert helm_run.run(*helm_run.template_args(extra=tier)).returncode == 0  # either kind of work will do
    proc = helm_run.run(*helm_run.template_args(extra=[*tier, "--set", "features.enabled=false"]))
    assert proc.returncode != 0 and "needs gateway, features and inference enabled" in proc.stderr
    proc = helm_run.run(*helm_run.template_args(extra=[*tier, "--set", "backgroundTier.gateway.autoscaling=x"]))
    assert proc.returncode != 0 and "autoscaling" in proc.stderr  # schema: only the tier's own keys


def test_service_names_fit_with_the_longest_fullname(helm_run: HelmRun) -> None:
    docs = helm_run.template(("background.yaml",), ("--set", "fullnameOverride=" + "x" * 40))
    names = [d["metadata"]["name"] for d in docs if d["kind"] == "Service"]
    assert "x" * 40 + "-inference-bg-headless" in names
    assert all(len(name) <= 63 for name in names), [n for n in names if len(n) > 63]
