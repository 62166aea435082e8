"""Helm: inference.modelPool renders the pool settings, the routing mount and explicit worker control."""

from __future__ import annotations

from typing import Any

from tests.helm.chart import HelmRun


def _container(docs: list[Any], component: str) -> dict[str, Any]:
    for doc in docs:
        if doc.get("kind") == "Deployment" and doc["metadata"]["name"].endswith(component):
            return doc["spec"]["template"]["spec"]["containers"][0]
    raise AssertionError(f"no {component} Deployment")


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def test_bounded_pool_renders_settings_routing_and_explicit_workers(helm_run: HelmRun) -> None:
    docs = helm_run.template(
        extra=[
            "--set",
            "inference.modelPool.maxModels=20",
            "--set",
            "inference.modelPool.maxBytes=1048576",
            "--set",
            "ortWorker.enabled=true",
            "--set",
            "ortWorker.replicaCount=1",
            "--set",
            "ortWorker.autoscaling.enabled=false",
        ]
    )
    inference = _container(docs, "inference")
    env = _env(inference)
    assert env["PREDMESH_INFERENCE_POOL_MAX_MODELS"] == "20"
    assert env["PREDMESH_INFERENCE_POOL_MAX_BYTES"] == "1048576"
    assert env["PREDMESH_INFERENCE_ROUTING_PATH"] == "/etc/predmesh/routing/routing.yaml"
    assert any(m["mountPath"] == "/etc/predmesh/routing" for m in inference["volumeMounts"])
    worker = _container(docs, "ort-worker")
    assert _env(worker)["PREDMESH_ORTWORKER_MODEL_CONTROL"] == "explicit"
    assert worker["command"][-1] == "services.ortworker.app"


def test_default_has_no_pool_and_workers_load_everything(helm_run: HelmRun) -> None:
    docs = helm_run.template(extra=["--set", "ortWorker.enabled=true"])
    env = _env(_container(docs, "inference"))
    assert not any(name.startswith("PREDMESH_INFERENCE_POOL_") for name in env)
    assert _env(_container(docs, "ort-worker"))["PREDMESH_ORTWORKER_MODEL_CONTROL"] == "none"


def test_worker_local_pool_and_eager_lists_reach_the_routing_configmap(helm_run: HelmRun) -> None:
    docs = helm_run.template(
        extra=[
            "--set",
            "ortWorker.enabled=true",
            "--set",
            "ortWorker.modelPool.maxModels=20",
            "--set-json",
            'models.fraud.eager=["1"]',
        ]
    )
    worker = _container(docs, "ort-worker")
    env = _env(worker)
    assert env["PREDMESH_ORTWORKER_POOL_MAX_MODELS"] == "20" and env["PREDMESH_ORTWORKER_MODEL_CONTROL"] == "none"
    assert env["PREDMESH_ORTWORKER_ROUTING_PATH"] == "/etc/predmesh/routing/routing.yaml"
    (routing,) = [d for d in docs if d.get("kind") == "ConfigMap" and d["metadata"]["name"].endswith("routing")]
    import yaml

    table = yaml.safe_load(next(iter(routing["data"].values())))
    assert table["models"]["fraud"]["eager"] == ["1"]


def test_orchestrator_pool_with_a_load_balanced_worker_fleet_is_refused(helm_run: HelmRun) -> None:
    proc = helm_run.run(
        *helm_run.template_args(
            extra=[
                "--set",
                "ortWorker.enabled=true",
                "--set",
                "inference.modelPool.maxModels=20",
                "--set",
                "ortWorker.replicaCount=2",
            ]
        )
    )
    assert proc.returncode != 0 and "worker-local pools" in proc.stderr
