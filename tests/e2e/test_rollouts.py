"""Safe rollouts on the real mesh: outcomes through the gateway (gRPC and POST /v1/outcomes on the
edge) into the analytics sink (embedded ClickHouse), the AUC view against sklearn, and the rollout
controller rolling back a worse canary within its first step and promoting a good one to 100 %.

The canaries are copies of fraud:1 (version 3 is the demo's own fraud:3): version 5 unchanged (good),
version 4 scoring P(legit) instead of P(fraud) (`postprocess.positive_class: legit`, deliberately
worse: AUC ~ 1 - stable's).
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from predmesh.cli import main as cli
from predmesh.cli.analytics import run_query
from predmesh.common.rollout import rollouts
from predmesh.demo import synth
from predmesh.local.mesh import LocalMesh, MeshOptions
from predmesh.v1 import common_pb2, outcomes_pb2, outcomes_pb2_grpc, prediction_pb2, prediction_pb2_grpc
from services.sink.core import views
from tests.report.browser import Elements

USERS = 1000
ROLLOUT = {
    "steps": [20, 50, 100],
    "min_duration_s": 2,
    # Twice min_outcomes: outcomes reach the store a little after their predictions, so a step that
    # may promote on its request count has, in practice, enough outcomes for the AUC criterion too
    # (with equal counts a promotion could race ahead of the outcomes and leave AUC pending).
    "min_requests": 160,
    "min_outcomes": 80,
    "max_auc_drop": 0.25,  # the bad canary drops ~0.5; two samples of one model differ by < 0.1
    "max_p99_increase_pct": 100,
    "p99_slack_ms": 200,  # latency is not what these canaries differ in; a loaded 2-core box jitters
    "max_bad_rate": 0.05,
}


def add_version(repo: Path, version: str, positive_class: str | None = None) -> None:
    target = repo / "fraud" / version
    shutil.copytree(repo / "fraud" / "1", target)
    spec = yaml.safe_load((target / "model.yaml").read_text())
    spec["version"] = version
    if positive_class:
        spec["postprocess"]["positive_class"] = positive_class
    (target / "model.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


@pytest.fixture(scope="module")
def rollout_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    state = Path(tmp_path_factory.mktemp("rollouts"))
    options = MeshOptions(
        state_dir=state,
        demo_users=USERS,
        with_sink=True,
        with_monitor=False,
        with_triton=False,
        ort_workers=0,
        extra_env={
            "PREDMESH_GATEWAY_ROUTING_POLL_MS": "100",
            # generous budgets: on a loaded 2-core machine only what the canaries do should matter
            "PREDMESH_GATEWAY_FEATURES_TIMEOUT_MS": "3000",
            "PREDMESH_GATEWAY_INFERENCE_TIMEOUT_MS": "3000",
            "PREDMESH_GATEWAY_DEFAULT_DEADLINE_MS": "5000",
            "PREDMESH_SINK_ROLLOUT_INTERVAL_S": "0.5",
            "PREDMESH_SINK_BATCH_MAX_WAIT_MS": "100",
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # export spans every 100 ms (SDK default: 5 s)
        },
    )
    mesh = LocalMesh(options)
    mesh.state_dir.mkdir(parents=True, exist_ok=True)
    mesh.prepare()
    add_version(mesh.model_repository, "5")
    add_version(mesh.model_repository, "4", positive_class="legit")
    routing = {"models": {"fraud": {"versions": [{"version": "1", "weight": 100}]}}}
    mesh.routing_path.write_text(yaml.safe_dump(routing))
    with mesh:
        yield mesh


@pytest.fixture(scope="module")
def transactions() -> pd.DataFrame:
    """Demo transactions with their fraud labels, half fraud (so AUC is well measured)."""
    frame = synth.transactions(synth.users(USERS), n=40_000, seed=5)
    fraud, legit = frame[frame.label == 1], frame[frame.label == 0]
    n = min(len(fraud), len(legit), 3000)
    mixed = pd.concat([fraud.iloc[:n], legit.iloc[:n]]).sample(frac=1.0, random_state=1)
    return mixed.reset_index(drop=True)


@dataclass
class Scored:
    request_id: str
    version: str
    arm: str
    score: float
    label: int


class Driver:
    """Predict + RecordOutcome per transaction, 6 in flight, through the gateway (API key, mTLS)."""

    def __init__(self, mesh: LocalMesh, txns: pd.DataFrame) -> None:
        self.mesh = mesh
        self.rows = txns.to_dict("records")
        self.next = 0
        self.scored: list[Scored] = []

    def _one(self, channel: Any, row: dict[str, Any]) -> Scored:
        context = {
            "amount": common_pb2.Value(number_value=float(row["amount"])),
            "hour_of_day": common_pb2.Value(number_value=float(row["hour_of_day"])),
            "channel": common_pb2.Value(string_value=str(row["channel"])),
        }
        resp = prediction_pb2_grpc.PredictionServiceStub(channel).Predict(
            prediction_pb2.PredictRequest(model="fraud", entity_id=row["entity_id"], context=context), timeout=10
        )
        label = int(row["label"])
        outcomes_pb2_grpc.OutcomeServiceStub(channel).RecordOutcome(
            outcomes_pb2.RecordOutcomeRequest(
                request_id=resp.request_id, model="fraud", value=float(label), label="fraud" if label else "legit"
            ),
            timeout=10,
        )
        return Scored(resp.request_id, resp.model_version, resp.arm, resp.prediction.score, label)

    def until(self, done: Callable[[], bool], timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        with self.mesh.gateway_channel() as channel, ThreadPoolExecutor(6) as pool:
            while not done():
                assert time.monotonic() < deadline, "rollout did not finish in time"
                assert self.next + 40 <= len(self.rows), "ran out of transactions"
                batch = self.rows[self.next : self.next + 40]
                self.next += 40
                self.scored += list(pool.map(lambda r: self._one(channel, r), batch))


def rollout_state(mesh: LocalMesh) -> dict[str, Any]:
    return yaml.safe_load(mesh.routing_path.read_text())["models"]["fraud"]


def state(mesh: LocalMesh) -> str:
    return rollouts(yaml.safe_load(mesh.routing_path.read_text()))["fraud"].state


def start_rollout(mesh: LocalMesh, canary: str) -> None:
    doc = yaml.safe_load(mesh.routing_path.read_text())
    doc["models"]["fraud"] = {
        "versions": [{"version": "1", "weight": 100}, {"version": canary, "weight": 0}],
        "rollout": {"canary": canary, **ROLLOUT},
    }
    tmp = mesh.routing_path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(doc))
    tmp.replace(mesh.routing_path)


def query(mesh: LocalMesh, sql: str) -> list[dict[str, Any]]:
    assert mesh.sink is not None
    with mesh.internal_channel(mesh.sink.address) as channel:
        columns, rows, _ = run_query(channel, sql)
    return [dict(zip(columns, row, strict=True)) for row in rows]


def decisions(mesh: LocalMesh, canary: str, count: int) -> list[dict[str, Any]]:
    """The canary's decision rows once `count` are stored (the controller rewrites the routing file
    first and stores the row after it, so a test that saw the file change may query a moment early)."""
    sql = (
        "SELECT action, step, weight, reason, evidence FROM predmesh.rollout_decisions "
        f"WHERE model = 'fraud' AND canary_version = '{canary}' ORDER BY ts"
    )
    deadline = time.monotonic() + 15
    while len(rows := query(mesh, sql)) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return [{**r, "evidence": json.loads(r["evidence"])} for r in rows]


def test_outcome_over_http_json_joins_its_prediction(rollout_mesh: LocalMesh) -> None:
    mesh = rollout_mesh
    with mesh.gateway_channel() as channel:
        resp = prediction_pb2_grpc.PredictionServiceStub(channel).Predict(
            prediction_pb2.PredictRequest(model="fraud", entity_id="u00042"), timeout=10
        )
    body = json.dumps({"request_id": resp.request_id, "model": "fraud", "label": "fraud", "value": 1}).encode()
    req = urllib.request.Request(
        f"{mesh.edge_scheme}://localhost:{mesh.edge_port}/v1/outcomes", data=body, headers=mesh.http_headers()
    )
    with urllib.request.urlopen(req, timeout=10, context=mesh.ssl_context()) as http:
        assert json.loads(http.read())["request_id"] == resp.request_id
    sql = (
        "SELECT p.model_version AS v, p.score AS score, o.label AS label, o.value AS value "
        "FROM predmesh.predictions AS p FINAL INNER JOIN predmesh.outcomes AS o FINAL "
        f"ON p.request_id = o.request_id WHERE p.request_id = '{resp.request_id}'"
    )
    deadline = time.monotonic() + 30
    while not (rows := query(mesh, sql)):
        assert time.monotonic() < deadline, "outcome never joined its prediction in the store"
        time.sleep(0.2)
    assert rows == [{"v": "1", "score": pytest.approx(resp.prediction.score), "label": "fraud", "value": 1}]
    # without an API key the edge refuses the outcome
    anonymous = urllib.request.Request(
        f"{mesh.edge_scheme}://localhost:{mesh.edge_port}/v1/outcomes",
        data=body,
        headers={"content-type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(anonymous, timeout=10, context=mesh.ssl_context())
    assert refused.value.code == 401


def test_predmesh_trace_prints_the_span_tree(rollout_mesh: LocalMesh, capsys: pytest.CaptureFixture[str]) -> None:
    mesh = rollout_mesh
    assert mesh.sink is not None
    with mesh.gateway_channel() as channel:
        resp = prediction_pb2_grpc.PredictionServiceStub(channel).Predict(
            prediction_pb2.PredictRequest(model="fraud", entity_id="u00007"), timeout=10
        )
    args = ["trace", resp.request_id, "--target", mesh.sink.address, "--state-dir", str(mesh.state_dir)]
    deadline = time.monotonic() + 30
    while True:
        code = cli(args)
        out = capsys.readouterr().out
        services = {line.split(": ")[0].split()[-1] for line in out.splitlines()[1:]}
        if code == 0 and {"predmesh-gateway", "predmesh-features", "predmesh-inference"} <= services:
            break
        assert time.monotonic() < deadline, out
        time.sleep(0.3)
    lines = out.splitlines()
    assert lines[0].startswith("trace ") and f"(request {resp.request_id})" in lines[0]
    root = lines[1]
    assert "predmesh-gateway" in root and root.startswith("     0.00 ms")  # the root span starts the trace
    assert any(line.index("predmesh-") > root.index("predmesh-") for line in lines[2:])  # children indented


def test_predmesh_trace_roots_an_edge_request_at_envoy(
    rollout_mesh: LocalMesh, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the real Envoy: its OpenTelemetry tracer (configured by the control plane, exporting to
    the sink's local OTLP receiver) starts the trace, so `predmesh trace` shows the edge span as the
    root with the gateway's span under it."""
    mesh = rollout_mesh
    assert mesh.sink is not None and mesh.envoy is not None
    with mesh.edge_channel() as channel:
        resp = prediction_pb2_grpc.PredictionServiceStub(channel).Predict(
            prediction_pb2.PredictRequest(model="fraud", entity_id="u00011"), timeout=10
        )
    args = ["trace", resp.request_id, "--target", mesh.sink.address, "--state-dir", str(mesh.state_dir)]
    deadline = time.monotonic() + 40  # Envoy's tracer exports in batches (flush interval ~5 s)
    while True:
        code = cli(args)
        out = capsys.readouterr().out
        services = [line.split(": ")[0].split()[-1] for line in out.splitlines()[1:]]
        if code == 0 and "predmesh-edge" in services and "predmesh-gateway" in services:
            break
        assert time.monotonic() < deadline, out
        time.sleep(0.5)
    lines = out.splitlines()
    root = lines[1]
    assert "predmesh-edge" in root and root.startswith("     0.00 ms")  # Envoy's span is the root
    assert sum(1 for line in lines[1:] if line.index("predmesh-") == root.index("predmesh-")) == 1  # one root
    gateway = next(line for line in lines[2:] if "predmesh-gateway" in line)
    assert gateway.index("predmesh-") > root.index("predmesh-")  # the gateway's span is nested under it


def test_worse_canary_rolled_back_good_one_promoted_and_auc_view_matches_sklearn(
    rollout_mesh: LocalMesh, transactions: pd.DataFrame
) -> None:
    mesh = rollout_mesh
    driver = Driver(mesh, transactions)
    started_s = time.time()  # the AUC view below covers this test's predictions only

    # 1. the worse canary (scores inverted) is rolled back during its first step
    start_rollout(mesh, "4")
    driver.until(lambda: state(mesh) != "running")
    route = rollout_state(mesh)
    assert route["rollout"]["state"] == "rolled_back"
    assert route["rollout"]["step"] == 0  # within its step
    assert route["versions"] == [{"version": "1", "weight": 100.0}]
    bad = decisions(mesh, "4", 2)
    assert [d["action"] for d in bad] == ["start", "rollback"]
    rollback = bad[1]
    assert rollback["step"] == 0 and rollback["weight"] == 20
    auc = rollback["evidence"]["criteria"]["auc"]
    assert auc["ok"] is False and auc["value"] < auc["threshold"]
    assert rollback["evidence"]["canary"]["outcomes"] >= ROLLOUT["min_outcomes"]
    assert any(s.version == "4" and s.arm == "canary" for s in driver.scored)

    # 2. the good canary (same model as stable) goes through every step to 100 %
    start_rollout(mesh, "5")
    driver.until(lambda: state(mesh) != "running")
    route = rollout_state(mesh)
    assert route["rollout"]["state"] == "promoted", route
    assert route["versions"] == [{"version": "5", "weight": 100.0}]
    good = decisions(mesh, "5", 3)
    assert [(d["action"], d["weight"]) for d in good] == [("start", 20), ("promote", 20), ("promote", 50)]
    for promoted in good[1:]:
        criteria = promoted["evidence"]["criteria"]
        assert all(c["ok"] is True for c in criteria.values() if not c.get("pending")), criteria
        assert promoted["evidence"]["elapsed_s"] >= ROLLOUT["min_duration_s"]
        assert promoted["evidence"]["canary"]["n"] >= ROLLOUT["min_requests"]
    assert any(not p["evidence"]["criteria"]["auc"].get("pending") for p in good[1:])

    # 3. the AUC view (outcomes joined to predictions) returns sklearn's AUC
    stable = [s for s in driver.scored if s.version == "1" and s.arm == "stable"]
    sent = len(driver.scored)
    deadline = time.monotonic() + 30
    while query(mesh, "SELECT count() AS n FROM predmesh.outcomes FINAL")[0]["n"] < sent:
        assert time.monotonic() < deadline, "outcomes missing from the store"
        time.sleep(0.3)
    quality = {
        (r["model_version"], r["arm"]): r
        for r in query(mesh, views.outcome_quality("predmesh", "fraud", since_s=started_s))
    }
    row = quality[("1", "stable")]
    assert row["outcomes"] == len(stable)
    expected = roc_auc_score([s.label for s in stable], [s.score for s in stable])
    assert row["auc"] == pytest.approx(expected, abs=1e-6)
    assert quality[("4", "canary")]["auc"] < 0.5 < expected

    # 4. `predmesh report` over the same store: the rollout history and AUC of the real mesh's data
    # (rendered in a real browser by tests/report; here the numbers in the HTML are checked)
    assert mesh.sink is not None
    out = mesh.state_dir / "report-fraud.html"
    args = ["report", "fraud", "--out", str(out), "--target", mesh.sink.address, "--state-dir", str(mesh.state_dir)]
    assert cli(args) == 0
    page = Elements(out.read_text())
    points = page.find("circle", class_="point", data_chart="chart-rollout")
    assert [(p["data-kind"], float(p["data-value"])) for p in points] == [
        ("start", 20.0), ("rollback", 0.0), ("start", 20.0), ("promote", 50.0), ("promote", 100.0)
    ]  # fmt: skip
    auc = {a["data-series"]: float(a["data-value"]) for a in page.find("rect", class_="bar", data_chart="chart-auc")}
    assert auc["4/canary"] < 0.5 < auc["1/stable"]
