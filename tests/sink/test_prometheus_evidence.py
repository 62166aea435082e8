"""The rollout controller with Prometheus as its evidence source, against a fake Prometheus HTTP API
(tests/sink/fake_prometheus.py: the exact PromQL and request sent, real-format answers) and the
real embedded store (outcomes, decisions). Missing data never rolls a canary back: an empty
result or a NaN is insufficient evidence (hold), an HTTP or connection error is no decision."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from predmesh.common.rollout import rollouts
from predmesh.local.procs import free_port
from services.sink.app import evidence_source
from services.sink.backends.chdb_store import ChdbStore
from services.sink.backends.prometheus_api import PrometheusApi
from services.sink.core import promql
from services.sink.core.controller import RolloutController
from services.sink.core.evidence import AnalyticsEvidence, PrometheusEvidence
from services.sink.errors import EvidenceUnavailable
from services.sink.settings import SinkSettings
from tests.sink.fake_prometheus import Answer, FakePrometheus, matrix, vector

NOW = 1_800_000_000.0
STEP_AGE_S = 120.0
COUNTS = (
    'sum by (version, arm, degraded) (increase(predmesh_monitor_predictions_total{model="pm",arm=~"stable|canary",'
    'namespace="ml"}[120s]))'
)
P99 = (
    "histogram_quantile(0.99, sum by (le, version, arm) (increase(predmesh_monitor_prediction_latency_seconds_bucket"
    '{model="pm",arm=~"stable|canary",namespace="ml"}[120s])))'
)


def _route() -> dict[str, Any]:
    return {
        "versions": [{"version": "1", "weight": 80}, {"version": "2", "weight": 20}],
        "rollout": {"canary": "2", "steps": [20, 50, 100], "min_duration_s": 60, "min_requests": 50,
                    "step_started_s": NOW - STEP_AGE_S},
    }  # fmt: skip


def counts(stable_ok: str = "300", canary_ok: str = "100", canary_bad: str | None = None) -> dict[str, Any]:
    series = [
        ({"version": "1", "arm": "stable", "degraded": "false"}, stable_ok),
        ({"version": "2", "arm": "canary", "degraded": "false"}, canary_ok),
    ]
    if canary_bad is not None:
        series.append(({"version": "2", "arm": "canary", "degraded": "true"}, canary_bad))
    return vector(*series)


def p99s(stable: str = "0.010", canary: str = "0.011") -> dict[str, Any]:
    return vector(({"version": "1", "arm": "stable"}, stable), ({"version": "2", "arm": "canary"}, canary))


class Setup:
    def __init__(self, tmp_path: Path, store: ChdbStore) -> None:
        self.answers: dict[str, Answer] = {}
        self.fake = FakePrometheus(
            lambda q: self.answers.get("p99" if q.startswith("histogram") else "counts", (200, vector()))
        )
        self.path = tmp_path / "routing.yaml"
        self.path.write_text(yaml.safe_dump({"models": {"pm": _route()}}, sort_keys=False))
        self.errors: list[tuple[str, str]] = []
        self.store = store
        self.controller = self.make(PrometheusApi(self.fake.url + "/prom", 2.0, "Bearer s3cret"))

    def make(self, api: PrometheusApi) -> RolloutController:
        source = PrometheusEvidence(api.query, AnalyticsEvidence(self.store), 'namespace="ml"')
        return RolloutController(self.store, self.path, clock=lambda: NOW, evidence=source,
                                 on_evidence_error=lambda m, s: self.errors.append((m, s)))  # fmt: skip

    def answer(self, counts: Answer, p99: Answer) -> None:
        self.answers = {"counts": counts, "p99": p99}


@pytest.fixture
def setup(tmp_path: Path, store: ChdbStore) -> Iterator[Setup]:
    s = Setup(tmp_path, store)
    store.command("TRUNCATE TABLE predmesh.rollout_decisions")
    try:
        yield s
    finally:
        s.fake.close()


def _decisions(store: ChdbStore) -> list[tuple[str, dict[str, Any]]]:
    rows = store.query("SELECT action, evidence FROM predmesh.rollout_decisions WHERE model = 'pm' ORDER BY ts").rows
    return [(r[0], json.loads(r[1])) for r in rows]


def test_exact_promql_and_a_promotion_with_the_sources_recorded(setup: Setup) -> None:
    setup.answer((200, counts()), (200, p99s()))
    [(_, decision)] = setup.controller.evaluate_once()
    assert decision.action == "promote"
    assert setup.fake.queries == [COUNTS, P99]
    for request in setup.fake.requests:
        assert request["path"] == "/prom/api/v1/query"
        assert request["auth"] == "Bearer s3cret" and request["time"] == f"{NOW:.3f}"
    doc = yaml.safe_load(setup.path.read_text())
    assert doc["models"]["pm"]["versions"] == [{"version": "1", "weight": 50.0}, {"version": "2", "weight": 50.0}]
    [(action, evidence)] = _decisions(setup.store)
    assert action == "promote" and evidence["evidence_source"] == "prometheus"
    assert evidence["canary"]["n"] == 100 and evidence["stable"]["n"] == 300
    assert evidence["canary"]["sources"] == {"auc": "analytics", "bad_rate": "prometheus", "n": "prometheus",
                                             "outcomes": "analytics", "p99_ms": "prometheus"}  # fmt: skip
    p99 = evidence["criteria"]["p99_latency_ms"]
    assert p99["source"] == "prometheus" and p99["ok"] is True
    assert math.isclose(p99["value"], 11.0) and math.isclose(p99["threshold"], 10.0 * 1.1 + 1.0)
    assert evidence["criteria"]["bad_rate"] == {"value": 0.0, "threshold": 0.001, "ok": True, "source": "prometheus"}
    assert evidence["criteria"]["auc"]["pending"] is True and evidence["criteria"]["auc"]["source"] == "analytics"


@pytest.mark.parametrize(
    ("count_answer", "p99_answer", "failed", "value"),
    [
        (counts(), p99s(canary="0.050"), "p99_latency_ms", 50.0),  # slower canary
        (counts(canary_ok="90", canary_bad="10"), p99s(), "bad_rate", 0.1),  # degraded answers
    ],
)
def test_a_worse_canary_is_rolled_back_on_prometheus_evidence(
    setup: Setup, count_answer: dict[str, Any], p99_answer: dict[str, Any], failed: str, value: float
) -> None:
    setup.answer((200, count_answer), (200, p99_answer))
    [(_, decision)] = setup.controller.evaluate_once()
    assert decision.action == "rollback" and failed in decision.reason
    doc = yaml.safe_load(setup.path.read_text())
    assert doc["models"]["pm"]["versions"] == [{"version": "1", "weight": 100.0}]
    assert rollouts(doc)["pm"].state == "rolled_back"
    [(_, evidence)] = _decisions(setup.store)
    criterion = evidence["criteria"][failed]
    assert criterion["ok"] is False and criterion["source"] == "prometheus" and math.isclose(criterion["value"], value)


NO_SERIES = (200, vector())
HOLDS = {
    "no canary series yet": ((200, vector(({"version": "1", "arm": "stable", "degraded": "false"}, "300"))),
                             (200, p99s()), "0/50 canary requests"),
    "empty result": (NO_SERIES, NO_SERIES, "0/50 canary requests"),
    "no stable series": ((200, vector(({"version": "2", "arm": "canary", "degraded": "false"}, "100"))),
                         (200, p99s()), "insufficient evidence: p99_latency_ms"),
    "NaN canary p99": ((200, counts()), (200, p99s(canary="NaN")), "insufficient evidence: p99_latency_ms"),
    "NaN stable p99": ((200, counts()), (200, p99s(stable="NaN")), "insufficient evidence: p99_latency_ms"),
    "no p99 series": ((200, counts()), NO_SERIES, "insufficient evidence: p99_latency_ms"),
    "Inf canary p99": ((200, counts()), (200, p99s(canary="+Inf")), "insufficient evidence: p99_latency_ms"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(HOLDS))
def test_insufficient_evidence_holds(setup: Setup, case: str) -> None:
    count_answer, p99_answer, reason = HOLDS[case]
    setup.answer(count_answer, p99_answer)
    before = setup.path.read_bytes()
    spec = rollouts(yaml.safe_load(before))["pm"]
    evidence = setup.controller.evidence("pm", "1", spec)
    from services.sink.core.decide import decide

    decision = decide(spec, "1", evidence, NOW)
    assert (decision.action, decision.reason) == ("hold", reason)
    assert setup.controller.evaluate_once() == []
    assert setup.path.read_bytes() == before and _decisions(setup.store) == [] and setup.errors == []


ERRORS = {
    "503 unavailable": (503, {"status": "error", "errorType": "unavailable", "error": "TSDB not ready"}),
    "422 execution": (422, {"status": "error", "errorType": "execution", "error": "query timed out"}),
    "400 bad_data": (400, {"status": "error", "errorType": "bad_data", "error": "parse error"}),
    "200 not JSON": (200, "<html>proxy login</html>"),
    "200 status error": (200, {"status": "error", "errorType": "internal", "error": "boom"}),
    "200 no data": (200, {"status": "success"}),
    "200 bad value": (200, vector(({"version": "2", "arm": "canary", "degraded": "false"}, "lots"))),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_prometheus_errors_make_no_decision(setup: Setup, case: str) -> None:
    setup.answer(ERRORS[case], (200, p99s(canary="9.0")))  # a p99 that would roll back: never reached
    before = setup.path.read_bytes()
    assert setup.controller.evaluate_once() == []
    assert setup.path.read_bytes() == before and _decisions(setup.store) == []
    assert setup.errors == [("pm", "prometheus")]
    with pytest.raises(EvidenceUnavailable) as err:
        setup.controller.evidence("pm", "1", rollouts(yaml.safe_load(before))["pm"])
    assert "s3cret" not in str(err.value)


def test_unreachable_prometheus_makes_no_decision(setup: Setup) -> None:
    controller = setup.make(PrometheusApi(f"http://127.0.0.1:{free_port()}", 1.0))
    before = setup.path.read_bytes()
    assert controller.evaluate_once() == []
    assert setup.path.read_bytes() == before and setup.errors == [("pm", "prometheus")]


def test_answer_parsing() -> None:
    got = promql.samples(matrix(({"version": "2", "arm": "canary"}, ["1", "2", "7"]), ({"a": "b"}, [])))
    assert got == [({"version": "2", "arm": "canary"}, 7.0)]  # newest value; an empty series has none
    assert promql.samples({"status": "success", "data": {"resultType": "scalar", "result": [1.0, "3.5"]}}) == [
        ({}, 3.5)
    ]
    [(_, nan)] = promql.samples(vector(({}, "NaN")))
    assert math.isnan(nan)
    wrong_type = {"status": "success", "data": {"resultType": "string", "result": [{"metric": {}}]}}
    no_pair = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1]}]}}
    bad: object
    for bad in ([], wrong_type, no_pair):
        with pytest.raises(EvidenceUnavailable):
            promql.samples(bad)
    n, p99, rate = promql.arm_values(
        [({"version": "2", "arm": "canary", "degraded": "false"}, 29.6),
         ({"version": "2", "arm": "canary", "degraded": "true"}, 0.4),
         ({"version": "2", "arm": "stable", "degraded": "false"}, 1000.0)],  # same version, other arm
        [({"version": "2", "arm": "canary"}, 0.0125)], "2", "canary",
    )  # fmt: skip
    assert n == 30 and p99 == 12.5 and rate is not None and math.isclose(rate, 0.4 / 30)


def test_label_values_are_escaped_and_selectors_checked() -> None:
    query = promql.counts_query('we"ird\\m', 0.2)
    assert 'model="we\\"ird\\\\m"' in query and query.endswith("[1s]))")
    assert promql.check_selector(' namespace="ml", job=~"pred.*", ') == 'namespace="ml", job=~"pred.*"'
    for bad in ('x="1"}[5m])) or vector(1) #', "namespace=ml", 'a="b" c="d"'):
        with pytest.raises(ValueError):
            promql.check_selector(bad)


def test_settings_select_the_source(store: ChdbStore) -> None:
    assert isinstance(evidence_source(SinkSettings(), store), AnalyticsEvidence)
    settings = SinkSettings(rollout_evidence="prometheus", prometheus_url="https://prom.example:9090/p",
                            prometheus_auth_header="Bearer s3cret", prometheus_selector='namespace="ml"')  # fmt: skip
    assert isinstance(evidence_source(settings, store), PrometheusEvidence)
    assert "s3cret" not in repr(settings)
    with pytest.raises(ValueError, match="prometheus_url"):
        evidence_source(SinkSettings(rollout_evidence="prometheus"), store)
    with pytest.raises(ValueError, match="label matchers"):
        evidence_source(settings.model_copy(update={"prometheus_selector": "up or"}), store)
    with pytest.raises(ValueError, match="http"):
        PrometheusApi("prom:9090")
