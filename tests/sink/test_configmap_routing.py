"""The rollout controller on the routing ConfigMap through the Kubernetes API, against a local fake
API server over real HTTPS (tests/sink/fake_kube_api.py; no cluster exists here): service-account
token and CA, get/patch of one named ConfigMap, optimistic concurrency on resourceVersion."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from predmesh.common.rollout import rollouts
from services.sink.app import routing_store
from services.sink.backends.chdb_store import ChdbStore
from services.sink.backends.kube_configmap import ConfigMapRoutingStore, KubeApi, RoutingApiError
from services.sink.core.controller import RolloutController
from services.sink.core.rows import event_row
from services.sink.core.schema import OUTCOME_COLUMNS, PREDICTION_COLUMNS
from services.sink.settings import SinkSettings
from tests.sink.fake_kube_api import FakeKubeApi
from tests.sink.support import outcome, prediction

NS, NAME = "ml", "rel-predmesh-routing"
ROUTE = {
    "versions": [{"version": "1", "weight": 100}, {"version": "2", "weight": 0}],
    "rollout": {"canary": "2", "steps": [20, 100], "min_duration_s": 3600, "min_requests": 20, "min_outcomes": 20},
}


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[tuple[FakeKubeApi, Path]]:
    api = FakeKubeApi(tmp_path, "token-1", {(NS, NAME)})
    api.put(NS, NAME, {"routing.yaml": yaml.safe_dump({"models": {"kctl": ROUTE}})})
    api.put(NS, "other", {"routing.yaml": "models: {}\n"})
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text("token-1\n")
    (sa / "ca.crt").write_bytes(api.ca_path.read_bytes())
    (sa / "namespace").write_text(NS)
    try:
        yield api, sa
    finally:
        api.close()


def _routing(api: FakeKubeApi, name: str = NAME) -> dict[str, Any]:
    return dict(yaml.safe_load(api.objects[(NS, name)]["data"]["routing.yaml"]))


def test_controller_starts_and_rolls_back_through_the_configmap(
    store: ChdbStore, kube: tuple[FakeKubeApi, Path]
) -> None:
    api, sa = kube
    settings = SinkSettings(routing_backend="configmap", routing_configmap=NAME, kube_api_url=api.url,
                            kube_service_account_dir=sa)  # fmt: skip
    routing = routing_store(settings)
    assert isinstance(routing, ConfigMapRoutingStore)
    controller = RolloutController(store, routing)
    [(_, started)] = controller.evaluate_once()
    assert started.action == "start"
    assert _routing(api)["models"]["kctl"]["versions"] == [
        {"version": "1", "weight": 80.0},
        {"version": "2", "weight": 20.0},
    ]
    method, path, body = api.requests[-1]
    assert (method, path) == ("PATCH", f"/api/v1/namespaces/{NS}/configmaps/{NAME}")
    assert body is not None and body["metadata"] == {"resourceVersion": "1"} and set(body["data"]) == {"routing.yaml"}
    now = time.time()
    events = []
    for i in range(40):  # stable ranks perfectly, the canary inversely: AUC fails
        y = float(i % 2)
        events += [prediction(f"ks{i}", "kctl", "1", "stable", 0.1 + 0.8 * y, at_s=now), outcome(f"ks{i}", "kctl", y)]
        events += [prediction(f"kc{i}", "kctl", "2", "canary", 0.9 - 0.8 * y, at_s=now), outcome(f"kc{i}", "kctl", y)]
    rows = [r for r in (event_row(e) for e in events) if r is not None]
    store.insert("predictions", PREDICTION_COLUMNS, [r.values for r in rows if r.table == "predictions"])
    store.insert("outcomes", OUTCOME_COLUMNS, [r.values for r in rows if r.table == "outcomes"])
    (sa / "token").write_text("token-2\n")  # projected tokens rotate: read on every request
    api.token = "token-2"
    [(_, decision)] = controller.evaluate_once()
    assert decision.action == "rollback"
    doc = _routing(api)
    assert doc["models"]["kctl"]["versions"] == [{"version": "1", "weight": 100.0}]
    assert rollouts(doc)["kctl"].state == "rolled_back"
    assert {m for m, _p, _b in api.requests} == {"GET", "PATCH"}  # get and patch only (the Role's verbs)
    assert _routing(api, "other") == {"models": {}}  # nothing else touched
    decided = store.query("SELECT action FROM predmesh.rollout_decisions WHERE model = 'kctl' ORDER BY ts").rows
    assert [r[0] for r in decided] == ["start", "rollback"]


def test_a_concurrent_change_is_kept_and_the_change_reapplied(kube: tuple[FakeKubeApi, Path]) -> None:
    api, sa = kube
    routing = ConfigMapRoutingStore(KubeApi(api.url, sa / "token", sa / "ca.crt"), NS, NAME)

    def helm_upgrade(obj: dict[str, Any]) -> None:  # someone else writes between our GET and PATCH
        doc = yaml.safe_load(obj["data"]["routing.yaml"])
        doc["models"]["added"] = {"versions": [{"version": "1", "weight": 100}]}
        api.put(NS, NAME, {"routing.yaml": yaml.safe_dump(doc)})

    api.bump_before_patch = helm_upgrade

    def pause(doc: dict[str, Any]) -> bool:
        doc["models"]["kctl"]["rollout"]["state"] = "paused"
        return True

    assert routing.rewrite(pause) is True
    patches = [r for r in api.requests if r[0] == "PATCH"]
    assert len(patches) == 2  # the first got 409 Conflict
    doc = _routing(api)
    assert doc["models"]["kctl"]["rollout"]["state"] == "paused" and "added" in doc["models"]
    assert routing.rewrite(lambda _doc: False) is False
    assert len([r for r in api.requests if r[0] == "PATCH"]) == 2  # no change: no patch


def test_refusals_are_errors_with_the_status(kube: tuple[FakeKubeApi, Path], tmp_path: Path) -> None:
    api, sa = kube
    good = KubeApi(api.url, sa / "token", sa / "ca.crt")
    with pytest.raises(RoutingApiError) as forbidden:
        ConfigMapRoutingStore(good, NS, "someone-elses").read()
    assert forbidden.value.status == 403  # RBAC: resourceNames limit the Role to the routing ConfigMap
    (tmp_path / "bad-token").write_text("stolen")
    with pytest.raises(RoutingApiError) as unauthorized:
        ConfigMapRoutingStore(KubeApi(api.url, tmp_path / "bad-token", sa / "ca.crt"), NS, NAME).read()
    assert unauthorized.value.status == 401
    with pytest.raises(RoutingApiError) as untrusted:  # TLS verified against the cluster CA only
        ConfigMapRoutingStore(KubeApi(api.url, sa / "token", None), NS, NAME).read()
    assert untrusted.value.status == 0 and "CERTIFICATE_VERIFY_FAILED" in str(untrusted.value)
    with pytest.raises(RoutingApiError, match="no key"):
        ConfigMapRoutingStore(good, NS, NAME, key="other.yaml").read()
    with pytest.raises(ValueError, match="https"):
        KubeApi(api.url.replace("https", "http"), sa / "token", sa / "ca.crt")


def test_in_cluster_defaults(kube: tuple[FakeKubeApi, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    api, sa = kube
    port = api.url.rsplit(":", 1)[1]
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    settings = SinkSettings(routing_backend="configmap", routing_configmap=NAME, kube_service_account_dir=sa)
    routing = routing_store(settings)
    assert routing is not None and json.dumps(routing.read()["models"]["kctl"]["versions"])
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    with pytest.raises(ValueError, match="KUBERNETES_SERVICE_HOST"):
        routing_store(settings)
    with pytest.raises(ValueError, match="routing_configmap"):
        routing_store(SinkSettings(routing_backend="configmap", kube_service_account_dir=sa))
