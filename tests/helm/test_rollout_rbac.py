"""The rollout controller in a cluster (sink.rollout.enabled): the sink patches the routing ConfigMap
through the Kubernetes API with its own ServiceAccount, whose Role can only get and patch that one
ConfigMap; the rollout block of models.<m>.rollout lands in the routing table the gateways read."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import yaml

from predmesh.common.rollout import rollouts
from services.sink.settings import SinkSettings
from tests.helm.chart import NAMESPACE, RELEASE, HelmRun, Manifest, env_of, find, main_container, one, pod_spec

Render = Callable[[str], list[Manifest]]
ROUTING = f"{RELEASE}-predmesh-routing"


def test_sink_account_can_only_get_and_patch_the_routing_configmap(
    helm_run: HelmRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = helm_run.template(["rollout.yaml"])
    account = one(docs, "ServiceAccount", "sink")
    role = one(docs, "Role", "sink")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [ROUTING], "verbs": ["get", "patch"]}
    ]
    binding = one(docs, "RoleBinding", "sink")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]
    spec = pod_spec(docs, "sink")
    assert spec["serviceAccountName"] == account["metadata"]["name"] and spec["automountServiceAccountToken"] is True
    assert account["automountServiceAccountToken"] is False  # only the pod that needs it mounts the token
    for component in ("gateway", "inference", "logger", "monitor"):  # the data plane still has no token
        assert pod_spec(docs, component)["automountServiceAccountToken"] is False
    one(docs, "ConfigMap", "routing")
    env = env_of(main_container(docs, "sink"))
    for name, value in env.items():
        if name.startswith("PREDMESH_SINK_") and isinstance(value, str):
            monkeypatch.setenv(name, value)
    settings = SinkSettings()
    assert (settings.routing_backend, settings.routing_configmap) == ("configmap", ROUTING)
    assert settings.rollout_interval_s == 2.0 and settings.routing_path is None
    policy = one(docs, "NetworkPolicy", "sink")["spec"]
    assert {"to": [{"ipBlock": {"cidr": "10.96.0.1/32"}}], "ports": [{"protocol": "TCP", "port": 6443}]} in policy[
        "egress"
    ]


def test_rollout_block_lands_in_the_routing_table(helm_run: HelmRun) -> None:
    docs = helm_run.template(["rollout.yaml"])
    table = yaml.safe_load(one(docs, "ConfigMap", "routing")["data"]["routing.yaml"])
    route = table["models"]["fraud"]
    assert route["rollout"] == {
        "canary": "2",
        "steps": [5, 25, 100],
        "min_duration_s": 600,
        "min_requests": 1000,
        "max_bad_rate": 0.002,
    }
    spec = rollouts(table)["fraud"]  # the format the gateway and the controller parse
    assert (spec.canary, spec.steps, spec.state, spec.step_started_s) == ("2", (5.0, 25.0, 100.0), "running", 0.0)


def test_no_controller_account_unless_enabled(render: Render, helm_run: HelmRun) -> None:
    for docs in (render("default"), helm_run.template(["sink.yaml"])):
        assert not find(docs, "Role", "sink") and not find(docs, "ServiceAccount", "sink")
        table = yaml.safe_load(one(docs, "ConfigMap", "routing")["data"]["routing.yaml"])
        assert all("rollout" not in route for route in table["models"].values())
    sink = helm_run.template(["sink.yaml"])
    assert pod_spec(sink, "sink")["automountServiceAccountToken"] is False
    assert "PREDMESH_SINK_ROUTING_BACKEND" not in env_of(main_container(sink, "sink"))


def test_existing_account_when_not_created(helm_run: HelmRun) -> None:
    extra = ["--set", "serviceAccount.create=false", "--set", "serviceAccount.controlplaneName=cp"]
    proc = helm_run.run(*helm_run.template_args(["rollout.yaml"], extra))
    assert proc.returncode != 0 and "serviceAccount.sinkName" in proc.stderr
    docs = helm_run.template(["rollout.yaml"], [*extra, "--set", "serviceAccount.sinkName=rollouts"])
    assert pod_spec(docs, "sink")["serviceAccountName"] == "rollouts"
    assert not find(docs, "Role", "sink")


def test_schema_rejects_bad_rollout_values(helm_run: HelmRun) -> None:
    for bad in (
        "models.fraud.rollout.steps={0}",
        "models.fraud.rollout.maxBadRate=2",
        "models.fraud.rollout.stepz=1",
        "sink.rollout.intervalS=0",
    ):
        proc = helm_run.run(*helm_run.template_args(["rollout.yaml"], ["--set", bad]))
        assert proc.returncode != 0, bad
