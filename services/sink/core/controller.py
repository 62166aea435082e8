"""The rollout controller: evaluates every running rollout from the analytics store and
promotes or rolls back by rewriting the live routing table (a `RoutingStore`: the file locally,
the routing ConfigMap through the Kubernetes API in a cluster; core/routing_store.py).

It runs as a loop inside the sink (which owns the store: the embedded engine is in process,
and the evidence is what the sink has just inserted). Every `interval_s`:

1. read the routing table; for each model whose `rollout` is running:
2. a rollout not yet started gets its first step's weights (`start`);
3. otherwise get the stable and canary `Evidence` since the step began from the evidence source
   (core/evidence.py: the analytics store's `arm_stats` and `outcome_quality` by default;
   Prometheus for latency and error+degraded rate when configured) and `decide`; a source that
   cannot answer (EvidenceUnavailable) means no decision for that rollout on this pass (a log line
   and `on_evidence_error`), never a rollback;
4. a promote or rollback rewrites the table (file: locked, temp file + rename; ConfigMap: a patch
   conditional on the resourceVersion read; the gateways apply it live) only if the rollout in it is
   still the one evaluated (a `predmesh rollout pause` in between wins), then records the
   decision with its evidence: a `rollout_decisions` row, a metric (`on_decision`) and a log line.

Blocking (routing and store I/O): `evaluate_once` runs in a worker thread; one controller per
routing table (several would double-record decisions, not corrupt the table).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from predmesh.common.rollout import RolloutSpec, rollouts, set_rollout, set_weights, stable_version
from services.sink.core.decide import Decision, Evidence, decide, start
from services.sink.core.evidence import AnalyticsEvidence, EvidenceSource
from services.sink.core.routing_store import FileRoutingStore, RoutingStore
from services.sink.core.schema import DECISION_COLUMNS
from services.sink.core.store import AnalyticsStore
from services.sink.errors import EvidenceUnavailable

log = logging.getLogger(__name__)


def _weight_after(decision: Decision) -> float:
    """The canary's weight (%) once `decision` applied (for the report's rollout history)."""
    return 0.0 if decision.action == "rollback" else decision.spec.weight


class RolloutController:
    def __init__(
        self,
        store: AnalyticsStore,
        routing: Path | RoutingStore,
        on_decision: Callable[[str, Decision], None] | None = None,
        clock: Callable[[], float] = time.time,
        evidence: EvidenceSource | None = None,
        on_evidence_error: Callable[[str, str], None] | None = None,
    ) -> None:
        self._store = store
        self._routing: RoutingStore = FileRoutingStore(routing) if isinstance(routing, Path) else routing
        self._on_decision = on_decision or (lambda _m, _d: None)
        self._source: EvidenceSource = evidence or AnalyticsEvidence(store)
        self._on_evidence_error = on_evidence_error or (lambda _m, _s: None)
        self._clock = clock
        self.decisions: list[tuple[str, Decision]] = []  # this process's, newest last (bounded)

    def evidence(self, model: str, stable: str, spec: RolloutSpec) -> Evidence:
        """The current step's evidence (EvidenceUnavailable when the source cannot answer)."""
        return self._source.evidence(model, stable, spec, self._clock())

    def evaluate_once(self) -> list[tuple[str, Decision]]:
        """One pass over the routing table; returns the decisions that changed it."""
        document = self._routing.read()
        made: list[tuple[str, Decision]] = []
        for model, spec in rollouts(document).items():
            if spec.state != "running":
                continue
            stable = stable_version(document, model)
            now = self._clock()
            if spec.step_started_s <= 0:
                decision = start(spec, stable, now)
            else:
                try:
                    evidence = self._source.evidence(model, stable, spec, now)
                except EvidenceUnavailable as err:  # no evidence, no decision (never a rollback)
                    log.warning("rollout %s: no decision this pass: %s evidence unavailable: %s",
                                model, self._source.name, err.message)  # fmt: skip
                    self._on_evidence_error(model, self._source.name)
                    continue
                decision = decide(spec, stable, evidence, now)
            if decision.action != "hold" and self._apply(model, stable, spec, decision):
                made.append((model, decision))
        return made

    def _apply(self, model: str, stable: str, evaluated: RolloutSpec, decision: Decision) -> bool:
        def change(document: dict[str, Any]) -> bool:
            current = rollouts(document).get(model)
            if current != evaluated:  # changed since it was read (paused, aborted, edited): skip
                return False
            if decision.weights:
                set_weights(document, model, decision.weights)
            set_rollout(document, model, decision.spec)
            return True

        if not self._routing.rewrite(change):
            return False
        self._record(model, stable, evaluated, decision)
        return True

    def _record(self, model: str, stable: str, evaluated: RolloutSpec, decision: Decision) -> None:
        row = (
            self._clock(),
            model,
            stable,
            evaluated.canary,
            evaluated.step,
            evaluated.weight,
            decision.action,
            decision.reason,
            json.dumps(
                {
                    **decision.evidence,
                    "canary_weight_after": _weight_after(decision),
                    "evidence_source": self._source.name,
                },
                sort_keys=True,
            ),
        )
        try:
            self._store.insert("rollout_decisions", DECISION_COLUMNS, [row])
        except Exception:  # the routing file already changed: the log line below still records it
            log.exception("rollout decision not stored")
        self.decisions = [*self.decisions[-99:], (model, decision)]
        self._on_decision(model, decision)
        log.info(
            "rollout %s: %s canary %s at step %d (%g%%): %s; evidence %s",
            model,
            decision.action,
            evaluated.canary,
            evaluated.step,
            evaluated.weight,
            decision.reason,
            json.dumps(decision.evidence, sort_keys=True),
        )
