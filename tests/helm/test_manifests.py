"""Assertions on rendered objects: routing, restarts, probes, security, scaling, GPU pool, network."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.helm.chart import (
    NAMESPACE,
    PYTHON_SERVICES,
    RELEASE,
    WORKLOAD_KINDS,
    HelmRun,
    Manifest,
    all_pod_specs,
    env_of,
    find,
    main_container,
    one,
    pod_spec,
    workload,
)

Render = Callable[[str], list[Manifest]]


def routing_table(docs: list[Manifest]) -> dict[str, Any]:
    data = one(docs, "ConfigMap", "routing")["data"]["routing.yaml"]
    return yaml.safe_load(data)


# --- routing: canary/shadow in a live-reloaded ConfigMap --------------------------------------


def test_canary_weights_shadow_and_fallback_in_routing_configmap(render: Render) -> None:
    table = routing_table(render("canary"))
    assert table["models"]["fraud"] == {
        "versions": [{"version": "1", "weight": 90}, {"version": "2", "weight": 10}],
        "shadow": ["3"],
        "shadow_ratio": 0.1,
        "fallback": [
            {"type": "model", "model": "churn", "version": "7"},
            {"type": "constant", "score": 0.04, "label": "legit", "scores": [0.96, 0.04]},
        ],
    }
    assert table["models"]["churn"]["versions"] == [{"version": "7", "weight": 100}]
    assert "shadow_ratio" not in table["models"]["churn"]  # unset: the gateway's default (all)


def test_gateway_mounts_routing_as_directory_and_points_at_it(render: Render) -> None:
    docs = render("canary")
    spec = pod_spec(docs, "gateway")
    volume = next(v for v in spec["volumes"] if v.get("configMap", {}).get("name") == f"{RELEASE}-predmesh-routing")
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == volume["name"])
    assert "subPath" not in mount, "subPath mounts never receive ConfigMap updates"
    path = env_of(spec["containers"][0])["PREDMESH_GATEWAY_ROUTING_PATH"]
    assert path.startswith(mount["mountPath"] + "/")
    assert path.rsplit("/", 1)[1] in one(docs, "ConfigMap", "routing")["data"]


def test_no_routing_checksum_on_gateway_pods(render: Render, helm_run: HelmRun) -> None:
    docs = render("canary")
    routing_data = one(docs, "ConfigMap", "routing")["data"]["routing.yaml"]
    digests = {
        hashlib.sha256(routing_data.encode()).hexdigest(),
        hashlib.sha256(routing_data.strip().encode()).hexdigest(),
    }
    for doc in docs:
        if doc["kind"] not in WORKLOAD_KINDS:
            continue
        annotations = doc["spec"]["template"]["metadata"].get("annotations", {})
        assert not any("routing" in key for key in annotations), doc["metadata"]["name"]
        assert not digests & set(annotations.values()), doc["metadata"]["name"]
    # A weight change alters the routing ConfigMap and nothing else: no pod template changes.
    shifted = helm_run.template(
        ["canary.yaml"],
        ["--set-json", 'models.fraud.versions=[{"version":"1","weight":70},{"version":"2","weight":30}]'],
    )
    assert routing_table(shifted)["models"]["fraud"]["versions"][1]["weight"] == 30
    changed = [d["metadata"]["name"] for d, s in zip(docs, shifted, strict=True) if d != s]
    assert changed == [f"{RELEASE}-predmesh-routing"]


def test_restart_requiring_config_is_checksummed(render: Render) -> None:
    docs = render("canary")
    annotations = {
        c: workload(docs, c)["spec"]["template"]["metadata"].get("annotations", {})
        for c in ("envoy", "gateway", "features")
    }
    assert "checksum/envoy-bootstrap" in annotations["envoy"]
    assert "checksum/api-keys" not in annotations["gateway"]  # key file re-read live (rotation)
    assert "checksum/feature-registry" in annotations["features"]
    # ...and the checksum follows the content.
    bootstrap = one(docs, "ConfigMap", "envoy-bootstrap")["data"]["bootstrap.yaml"]
    assert (
        annotations["envoy"]["checksum/envoy-bootstrap"] == hashlib.sha256(bootstrap.rstrip("\n").encode()).hexdigest()
    )


# --- env contract of the services -------------------------------------------------------------


@pytest.mark.parametrize("component", sorted(PYTHON_SERVICES))
def test_common_env_and_run_command(render: Render, component: str) -> None:
    docs = render("default")
    container = main_container(docs, component)
    env = env_of(container)
    prefix = PYTHON_SERVICES[component]
    assert env[f"{prefix}HOST"] == "0.0.0.0"
    assert env[f"{prefix}PORT"] == str(container["ports"][0]["containerPort"])
    assert float(env[f"{prefix}GRACE_S"]) > 0
    assert env[f"{prefix}LOG_LEVEL"] == "INFO"
    assert container["command"] == ["python", "-m", f"services.{component}.app"]


def test_service_specific_env(render: Render) -> None:
    docs = render("default")
    gw = env_of(main_container(docs, "gateway"))
    ns = NAMESPACE
    assert gw["PREDMESH_GATEWAY_FEATURES_TARGET"] == f"dns:///{RELEASE}-predmesh-features-headless.{ns}.svc:50052"
    assert gw["PREDMESH_GATEWAY_INFERENCE_TARGET"] == f"dns:///{RELEASE}-predmesh-inference-headless.{ns}.svc:50053"
    assert gw["PREDMESH_GATEWAY_LOGGER_TARGET"] == f"dns:///{RELEASE}-predmesh-logger-headless.{ns}.svc:50054"
    assert env_of(main_container(docs, "features"))["PREDMESH_FEATURES_REDIS_URL"] == "redis://redis-master:6379/0"
    assert env_of(main_container(docs, "inference"))["PREDMESH_INFERENCE_MODEL_REPOSITORY"] == "/app/models"
    logger = env_of(main_container(docs, "logger"))
    assert logger["PREDMESH_LOGGER_BOOTSTRAP_SERVERS"] == "kafka:9092"
    for component in PYTHON_SERVICES:
        for svc in ("", "-headless"):
            if component == "monitor":  # gRPC health only: nobody calls it
                assert not find(docs, "Service", component + svc)
            else:
                one(docs, "Service", component + svc)


def test_gateway_api_keys_come_from_a_secret(render: Render) -> None:
    docs = render("canary")
    path = env_of(main_container(docs, "gateway"))["PREDMESH_GATEWAY_API_KEYS_PATH"]
    secret = one(docs, "Secret", "gateway-api-keys")
    volume = next(v for v in pod_spec(docs, "gateway")["volumes"] if v.get("secret"))
    mount = next(m for m in main_container(docs, "gateway")["volumeMounts"] if m["name"] == volume["name"])
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert path == mount["mountPath"] + "/PREDMESH_GATEWAY_API_KEYS"
    table = yaml.safe_load(secret["stringData"]["PREDMESH_GATEWAY_API_KEYS"])
    digest = hashlib.sha256(b"team-a").hexdigest()
    assert table[f"sha256:{digest}"] == ["fraud"]  # stored hashed, never the key itself
    assert "team-a" not in json.dumps(table) and "admin" not in json.dumps(table)
    annotations = workload(docs, "gateway")["spec"]["template"]["metadata"].get("annotations") or {}
    assert "checksum/api-keys" not in annotations  # rotation re-reads the file: no pod roll


# --- probes, shutdown, security ---------------------------------------------------------------


@pytest.mark.parametrize("component", [*sorted(PYTHON_SERVICES), "ort-worker"])
def test_probes_are_native_grpc(render: Render, component: str) -> None:
    container = main_container(render("gpu-keda"), component)
    port = container["ports"][0]["containerPort"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": port}, probe
        assert "httpGet" not in container[probe] and "exec" not in container[probe]


@pytest.mark.parametrize("value_set", ["default", "minimal"])
def test_termination_grace_follows_service_grace(render: Render, value_set: str) -> None:
    docs = render(value_set)
    pre_stop = 0 if value_set == "minimal" else 3
    for component in PYTHON_SERVICES:
        spec = pod_spec(docs, component)
        env = env_of(spec["containers"][0])
        grace = float(env[f"{PYTHON_SERVICES[component]}GRACE_S"])
        drain = float(env.get(f"{PYTHON_SERVICES[component]}DRAIN_DELAY_S", 0))
        assert spec["terminationGracePeriodSeconds"] == pre_stop + math.ceil(drain) + math.ceil(grace) + 5, component
        lifecycle = spec["containers"][0].get("lifecycle")
        if pre_stop:
            assert lifecycle == {"preStop": {"sleep": {"seconds": pre_stop}}}
        else:
            assert lifecycle is None


@pytest.mark.parametrize("value_set", ["default", "gpu-keda", "gpu-hpa"])
def test_security_context_everywhere(render: Render, value_set: str) -> None:
    for name, spec in all_pod_specs(render(value_set)):
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True, name
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in spec.get("initContainers", []) + spec["containers"]:
            sc = container["securityContext"]
            where = f"{name}/{container['name']}"
            assert sc["runAsNonRoot"] is True, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{where}: a read-only root needs a writable /tmp"
            assert "resources" in container and container["resources"].get("requests"), where
            assert container["resources"].get("limits"), where


def test_service_accounts_and_rbac(render: Render) -> None:
    docs = render("default")
    role = one(docs, "Role", "controlplane")
    assert {
        "apiGroups": ["discovery.k8s.io"],
        "resources": ["endpointslices"],
        "verbs": ["get", "list", "watch"],
    } in role["rules"]
    for rule in role["rules"]:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}, "control plane is read-only"
    binding = one(docs, "RoleBinding", "controlplane")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    cp = pod_spec(docs, "controlplane")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": cp["serviceAccountName"], "namespace": NAMESPACE}]
    assert cp["automountServiceAccountToken"] is True
    for name, spec in all_pod_specs(docs):
        if not name.endswith("-controlplane"):
            assert spec["automountServiceAccountToken"] is False, name
            assert spec["serviceAccountName"] != cp["serviceAccountName"], name


# --- scaling, disruption, persistence ---------------------------------------------------------


def test_default_hpas_for_cpu_services(render: Render) -> None:
    docs = render("default")
    hpas = {
        d["metadata"]["name"].removeprefix(f"{RELEASE}-predmesh-"): d for d in find(docs, "HorizontalPodAutoscaler")
    }
    assert set(hpas) == {"envoy", "gateway", "features", "inference"}
    for component, hpa in hpas.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": f"{RELEASE}-predmesh-{component}",
        }
        assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
        assert "replicas" not in workload(docs, component)["spec"], "the HPA owns replicas"
    assert workload(docs, "controlplane")["spec"]["replicas"] == 1
    pdbs = {d["metadata"]["name"] for d in find(docs, "PodDisruptionBudget")}
    assert pdbs == {
        f"{RELEASE}-predmesh-{c}"
        for c in ("envoy", "controlplane", "gateway", "features", "inference", "logger", "monitor")
    }
    assert not find(docs, "Deployment", "ort-worker"), "the ORT pool is opt-in"


def test_minimal_has_no_hpa_pdb_netpol_or_ort_pool(render: Render) -> None:
    docs = render("minimal")
    for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "StatefulSet"):
        assert not find(docs, kind), kind
    assert not find(docs, "Deployment", "ort-worker")
    assert "PREDMESH_INFERENCE_ORT_WORKERS" not in env_of(main_container(docs, "inference"))
    assert workload(docs, "gateway")["spec"]["replicas"] == 1


def test_logger_journal_is_a_persistent_statefulset_by_default(render: Render) -> None:
    docs = render("default")
    sts = one(docs, "StatefulSet", "logger")
    assert sts["spec"]["serviceName"] == f"{RELEASE}-predmesh-logger-headless"
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "journal"
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"
    container = sts["spec"]["template"]["spec"]["containers"][0]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "journal")
    assert env_of(container)["PREDMESH_LOGGER_JOURNAL_DIR"] == mount["mountPath"]
    # Without persistence: a Deployment with an emptyDir journal.
    lite = render("gpu-hpa")
    assert not find(lite, "StatefulSet")
    volumes = pod_spec(lite, "logger")["volumes"]
    assert any(v["name"] == "journal" and "emptyDir" in v for v in volumes)


# --- GPU pool ---------------------------------------------------------------------------------


def test_triton_on_gpu_nodes(render: Render) -> None:
    docs = render("gpu-keda")
    spec = pod_spec(docs, "triton")
    triton = spec["containers"][0]
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert triton["resources"]["requests"]["nvidia.com/gpu"] == 2
    # Helm merges maps: the chart's default GPU selector stays unless set to null.
    assert spec["nodeSelector"] == {"cloud.example.com/gpu-pool": "a100", "nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert spec["runtimeClassName"] == "nvidia"
    assert "--model-repository=/models" in triton["args"]
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    # Model repository pulled from object storage by an init container into an emptyDir.
    init = spec["initContainers"][0]
    assert env_of(init)["MODEL_REPOSITORY_URI"] == "s3://models/predmesh"
    assert init["envFrom"] == [{"secretRef": {"name": "model-bucket-credentials"}}]
    assert any(v["name"] == "models" and "emptyDir" in v for v in spec["volumes"])
    assert any(v["name"] == "dshm" and v["emptyDir"]["medium"] == "Memory" for v in spec["volumes"])
    grace = spec["terminationGracePeriodSeconds"]
    assert grace == 3 + 30 + 5 and f"--exit-timeout-secs={30}" in triton["args"]
    inference = env_of(main_container(docs, "inference"))
    assert (
        inference["PREDMESH_INFERENCE_TRITON_TARGET"]
        == f"dns:///{RELEASE}-predmesh-triton-headless.{NAMESPACE}.svc:8001"
    )
    assert not find(render("default"), "Deployment", "triton"), "Triton is opt-in"


def test_gpu_pool_keda_queue_depth_with_warm_pool(render: Render) -> None:
    docs = render("gpu-keda")
    scaled = one(docs, "ScaledObject", "triton")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == workload(docs, "triton")["metadata"]["name"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"], spec["idleReplicaCount"]) == (2, 6, 0)
    trigger = spec["triggers"][0]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
    assert "nv_inference_pending_request_count" in trigger["metadata"]["query"]
    assert f'namespace="{NAMESPACE}"' in trigger["metadata"]["query"]
    assert not find(docs, "HorizontalPodAutoscaler", "triton"), "KEDA owns the HPA"
    assert "replicas" not in workload(docs, "triton")["spec"]


def test_gpu_pool_hpa_fallback_on_external_metric(render: Render) -> None:
    docs = render("gpu-hpa")
    assert not find(docs, "ScaledObject")
    hpa = one(docs, "HorizontalPodAutoscaler", "triton")
    metric = hpa["spec"]["metrics"][0]
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["name"] == "predmesh_triton_queue_depth"
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "8"}
    assert hpa["spec"]["minReplicas"] == 1
    volumes = pod_spec(docs, "triton")["volumes"]
    assert {
        "name": "models",
        "persistentVolumeClaim": {"claimName": "predmesh-models", "readOnly": True},
    } in volumes


# --- network policies -------------------------------------------------------------------------


def _peer_components(rule: Manifest, key: str) -> set[str]:
    return {
        p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in rule.get(key, []) if "podSelector" in p
    }


def test_network_policies_default_deny_and_needed_edges(render: Render) -> None:
    docs = render("gpu-keda")
    deny = next(d for d in find(docs, "NetworkPolicy") if d["metadata"]["name"].endswith("-default-deny"))
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    assert "app.kubernetes.io/component" not in deny["spec"]["podSelector"]["matchLabels"]

    def policy(component: str) -> Manifest:
        return one(docs, "NetworkPolicy", component)["spec"]

    def edges(component: str, direction: str) -> set[tuple[str, int]]:
        key = "from" if direction == "ingress" else "to"
        return {
            (c, p["port"])
            for rule in policy(component).get(direction, [])
            for c in _peer_components(rule, key)
            for p in rule["ports"]
        }

    assert edges("gateway", "ingress") == {("envoy", 50051)}
    assert edges("gateway", "egress") == {("features", 50052), ("inference", 50053), ("logger", 50054)}
    assert edges("features", "ingress") == {("gateway", 50052)}
    assert edges("inference", "egress") == {("ort-worker", 50055), ("triton", 8001)}
    assert edges("ort-worker", "ingress") == {("inference", 50055)}
    assert edges("logger", "ingress") == {("gateway", 50054)}
    assert edges("controlplane", "ingress") == {("envoy", 18000)}
    assert edges("triton", "ingress") == {("inference", 8001)}
    # Nobody calls the monitor: its only ingress is the scrapers', on the metrics port.
    assert edges("monitor", "ingress") == set()
    assert [[p["port"] for p in rule["ports"]] for rule in policy("monitor")["ingress"]] == [[9464]]
    assert [p["port"] for p in policy("features")["egress"][0]["ports"]] == [6379]
    assert [p["port"] for p in policy("logger")["egress"][0]["ports"]] == [9092]
    # Object-storage sync needs egress 443 from the pods that run the init container.
    assert any(p["port"] == 443 for rule in policy("triton")["egress"] for p in rule["ports"])
    # Metrics scraping of Triton only from the configured monitoring namespace.
    assert any(
        rule.get("from", [{}])[0].get("namespaceSelector") and rule["ports"][0]["port"] == 8002
        for rule in policy("triton")["ingress"]
    )
