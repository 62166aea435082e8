"""`helm lint` and `helm template` on the chart: value sets render, bad values fail clearly."""

from __future__ import annotations

import pytest

from tests.helm.chart import CHART, VALUE_SETS, VALUES, HelmRun


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_lint_strict(helm_run: HelmRun, name: str) -> None:
    files = [arg for f in VALUE_SETS[name] for arg in ("-f", str(VALUES / f))]
    proc = helm_run.run("lint", "--strict", str(CHART), *files)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_template_renders(helm_run: HelmRun, name: str) -> None:
    docs = helm_run.template(VALUE_SETS[name])
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ConfigMap"} <= kinds
    for doc in docs:
        assert doc["metadata"]["name"], doc
        assert len(doc["metadata"]["name"]) <= 63, doc["metadata"]["name"]


def _fails(helm_run: HelmRun, *args: str) -> str:
    proc = helm_run.run(*helm_run.template_args(extra=args))
    assert proc.returncode != 0, "rendering should have failed"
    return proc.stderr


def test_weights_not_summing_to_100_fail_with_clear_message(helm_run: HelmRun) -> None:
    proc = helm_run.run(*helm_run.template_args(files=["bad-weights.yaml"]))
    assert proc.returncode != 0
    assert "models.fraud: canary weights must sum to 100, got 90 (versions: 1=80, 2=10)" in proc.stderr


def test_live_weight_change_via_set_json(helm_run: HelmRun) -> None:
    """The documented way to move a canary: restate the whole split atomically with --set-json."""
    split = '[{"version":"1","weight":50},{"version":"2","weight":50}]'
    docs = helm_run.template(["canary.yaml"], ["--set-json", f"models.fraud.versions={split}"])
    assert any(d["kind"] == "ConfigMap" and "weight: 50" in d["data"].get("routing.yaml", "") for d in docs)


def test_fallback_to_itself_fails(helm_run: HelmRun) -> None:
    route = '{"versions":[{"version":"1","weight":100}],"fallback":[{"type":"model","model":"fraud"}]}'
    err = _fails(helm_run, "--set-json", f"models.fraud={route}")
    assert "models.fraud.fallback[0]: a model cannot fall back to itself" in err
    err = _fails(helm_run, "--set-json", 'models.fraud.fallback=[{"type":"constant"}]')
    assert "/models/fraud/fallback/0" in err  # schema: a constant step needs a score


def test_duplicate_version_fails(helm_run: HelmRun) -> None:
    arms = '[{"version":"1","weight":50},{"version":"1","weight":50}]'
    err = _fails(helm_run, "--set-json", f"models.fraud.versions={arms}")
    assert 'lists version "1" twice' in err


def test_schema_rejects_typos_and_out_of_range_values(helm_run: HelmRun) -> None:
    assert "additional properties 'versionz' not allowed" in _fails(helm_run, "--set", "models.fraud.versionz=1")
    err = _fails(helm_run, "--set-json", 'models.fraud.versions=[{"version":"1","weight":150}]')
    assert "/models/fraud/versions/0/weight" in err
    err = _fails(helm_run, "--set-json", 'models.fraud.versions=[{"version":"1","weight":60}]')
    assert "value must be 100" in err  # a single-version model must carry all traffic (schema)
    assert "/gateway/port" in _fails(helm_run, "--set", "gateway.port=0")


def test_model_repository_requirements(helm_run: HelmRun) -> None:
    assert "claimName" in _fails(helm_run, "--set", "modelRepository.type=pvc")
    assert "uri" in _fails(helm_run, "--set", "modelRepository.type=objectStorage")


def test_idle_replicas_need_keda_and_must_be_below_warm_pool(helm_run: HelmRun) -> None:
    base = ["--set", "triton.enabled=true", "--set", "triton.autoscaling.idleReplicaCount=0"]
    assert "needs triton.autoscaling.keda.enabled=true" in _fails(helm_run, *base)
    err = _fails(
        helm_run,
        *base,
        "--set",
        "triton.autoscaling.keda.enabled=true",
        "--set",
        "triton.autoscaling.minReplicas=1",
        "--set",
        "triton.autoscaling.idleReplicaCount=1",
    )
    assert "idleReplicaCount (1) must be below minReplicas (1)" in err


def test_min_replicas_above_max_fails(helm_run: HelmRun) -> None:
    err = _fails(helm_run, "--set", "gateway.autoscaling.minReplicas=5", "--set", "gateway.autoscaling.maxReplicas=3")
    assert "gateway.autoscaling.minReplicas (5) must not exceed maxReplicas (3)" in err
