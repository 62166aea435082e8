"""`predmesh rollout status|pause|resume|abort` on the routing ConfigMap through the Kubernetes API
(the fake API server over real HTTPS, tests/sink/fake_kube_api.py), and a CLI abort racing the
rollout controller: both go through the same RoutingStore with resourceVersion compare-and-swap,
so neither change is lost (one of them gets 409 Conflict, re-reads and re-applies or gives up)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from predmesh.cli import main
from predmesh.common.rollout import RolloutSpec, rollouts
from services.sink.backends.chdb_store import ChdbStore
from services.sink.backends.kube_configmap import ConfigMapRoutingStore, KubeApi
from services.sink.core.controller import RolloutController
from services.sink.core.decide import ArmEvidence, Evidence
from tests.sink.fake_kube_api import FakeKubeApi

NS, NAME = "ml", "rel-predmesh-routing"
NOW = 1_700_000_000.0
GOOD = ArmEvidence(n=500, p99_ms=5.0, bad_rate=0.0, outcomes=0)


def _route() -> dict[str, Any]:
    return {
        "versions": [{"version": "1", "weight": 80}, {"version": "2", "weight": 20}],
        "rollout": {"canary": "2", "steps": [20, 50, 100], "min_duration_s": 60, "min_requests": 100,
                    "step_started_s": NOW - 120},
    }  # fmt: skip


class Passing:
    """Evidence that passes every criterion (the controller would promote)."""

    name = "test"

    def evidence(self, model: str, stable: str, spec: RolloutSpec, now_s: float) -> Evidence:
        return Evidence(GOOD, GOOD)


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[tuple[FakeKubeApi, list[str]]]:
    api = FakeKubeApi(tmp_path, "tok", {(NS, NAME)})
    api.put(NS, NAME, {"routing.yaml": yaml.safe_dump({"models": {"fraud": _route()}}, sort_keys=False)})
    (tmp_path / "token").write_text("tok\n")
    flags = ["--routing-configmap", NAME, "--namespace", NS, "--kube-api-url", api.url,
             "--kube-token-file", str(tmp_path / "token"), "--kube-ca-file", str(api.ca_path),
             "--state-dir", str(tmp_path), "--target", "127.0.0.1:1", "--timeout", "2"]  # fmt: skip
    try:
        yield api, flags
    finally:
        api.close()


def _doc(api: FakeKubeApi) -> dict[str, Any]:
    return dict(yaml.safe_load(api.objects[(NS, NAME)]["data"]["routing.yaml"]))


def _controller(api: FakeKubeApi, store: ChdbStore, tmp_path: Path) -> RolloutController:
    routing = ConfigMapRoutingStore(KubeApi(api.url, tmp_path / "token", api.ca_path), NS, NAME)
    return RolloutController(store, routing, clock=lambda: NOW, evidence=Passing())


def test_status_pause_resume_abort_through_the_api(
    kube: tuple[FakeKubeApi, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    api, flags = kube
    assert main(["rollout", "status", "fraud", *flags]) == 0
    assert "canary 2, state running, step 0 (20%)" in capsys.readouterr().out
    assert main(["rollout", "pause", "fraud", *flags]) == 0
    assert rollouts(_doc(api))["fraud"].state == "paused"
    assert main(["rollout", "resume", "fraud", *flags]) == 0
    spec = rollouts(_doc(api))["fraud"]
    assert spec.state == "running" and spec.step_started_s > NOW - 120
    assert main(["rollout", "abort", "fraud", *flags]) == 0
    doc = _doc(api)
    assert doc["models"]["fraud"]["versions"] == [{"version": "1", "weight": 100.0}]
    assert rollouts(doc)["fraud"].state == "aborted"
    patches = [body for method, _path, body in api.requests if method == "PATCH"]
    assert len(patches) == 3 and all(p is not None and "resourceVersion" in p["metadata"] for p in patches)
    with pytest.raises(SystemExit, match="already aborted"):
        main(["rollout", "pause", "fraud", *flags])
    assert api.objects[(NS, NAME)]["metadata"]["resourceVersion"] == "4"  # a refused change writes nothing


def test_api_refusals_are_clear_errors(kube: tuple[FakeKubeApi, list[str]], tmp_path: Path) -> None:
    api, flags = kube
    (tmp_path / "token").write_text("wrong")
    with pytest.raises(SystemExit, match="HTTP 401"):
        main(["rollout", "abort", "fraud", *flags])
    (tmp_path / "token").write_text("tok")
    other = [*flags[:1], "someone-elses", *flags[2:]]
    with pytest.raises(SystemExit, match="HTTP 403"):
        main(["rollout", "status", "fraud", *other])
    with pytest.raises(SystemExit, match="kube-api-url is required"):
        main(["rollout", "status", "fraud", *flags[:4], "--kube-token-file", str(tmp_path / "token")])
    assert rollouts(_doc(api))["fraud"].state == "running"


def test_abort_while_the_controller_promotes_keeps_both(
    kube: tuple[FakeKubeApi, list[str]], store: ChdbStore, tmp_path: Path
) -> None:
    """The controller's promotion lands between the CLI's read and its patch: the CLI's patch gets 409,
    it re-reads the promoted table and aborts that; the promotion stays recorded."""
    api, flags = kube
    controller = _controller(api, store, tmp_path)
    made: list[Any] = []
    api.bump_before_patch = lambda _obj: made.extend(controller.evaluate_once())  # during the CLI's PATCH
    assert main(["rollout", "abort", "fraud", *flags]) == 0
    [(_, decision)] = made
    assert decision.action == "promote" and decision.spec.step == 1
    statuses = [method for method, _path, _body in api.requests]
    assert statuses.count("PATCH") == 3  # CLI (409), controller, CLI again
    doc = _doc(api)
    spec = rollouts(doc)["fraud"]
    assert spec.state == "aborted" and spec.step == 1  # the abort applied on top of the promotion
    assert doc["models"]["fraud"]["versions"] == [{"version": "1", "weight": 100.0}]
    rows = store.query("SELECT action, step FROM predmesh.rollout_decisions WHERE model = 'fraud'").rows
    assert rows == [("promote", 0)]  # the promotion is recorded (step it was decided in)


def test_controller_decision_is_dropped_after_a_concurrent_abort(
    kube: tuple[FakeKubeApi, list[str]], store: ChdbStore, tmp_path: Path
) -> None:
    """The CLI's abort lands between the controller's read and its patch: the controller's patch gets
    409, it re-reads, sees the rollout changed (aborted) and writes nothing; the abort stands."""
    api, flags = kube
    store.command("TRUNCATE TABLE predmesh.rollout_decisions")
    controller = _controller(api, store, tmp_path)

    def abort(_obj: dict[str, Any]) -> None:  # during the controller's PATCH
        assert main(["rollout", "abort", "fraud", *flags]) == 0

    api.bump_before_patch = abort
    assert controller.evaluate_once() == []
    doc = _doc(api)
    assert rollouts(doc)["fraud"].state == "aborted" and rollouts(doc)["fraud"].step == 0
    assert doc["models"]["fraud"]["versions"] == [{"version": "1", "weight": 100.0}]
    assert [m for m, _p, _b in api.requests].count("PATCH") == 2  # controller (409), CLI; no controller retry write
    assert store.query("SELECT count() FROM predmesh.rollout_decisions WHERE model = 'fraud'").rows == [(0,)]
