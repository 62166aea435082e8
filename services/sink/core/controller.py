"""The rollout controller: evaluates every running rollout from the analytics store and
promotes or rolls back by rewriting the live routing table (a `RoutingStore`: the file locally,
the routing ConfigMap through the Kubernetes API in a cluster; core/routing_store.py).

It runs as a loop inside the sink (which owns the store: the embedded engine is in process,
and the evidence is what the sink has just inserted). Every `interval_s`:

1. read the routing table; for each model whose `rollout` is running:
2. a rollout not yet started gets its first step's weights (`start`);
3. otherwise query `arm_stats` and `outcome_quality` since the step began, build the stable and
   canary `Evidence`, and `decide`;
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
from services.sink.core import views
from services.sink.core.decide import ArmEvidence, Decision, Evidence, decide, start
from services.sink.core.routing_store import FileRoutingStore, RoutingStore
from services.sink.core.schema import DECISION_COLUMNS
from services.sink.core.store import AnalyticsStore

log = logging.getLogger(__name__)


def _arm(
    stats: dict[tuple[str, str], dict[str, Any]], quality: dict[tuple[str, str], dict[str, Any]], key: tuple[str, str]
) -> ArmEvidence:
    s = stats.get(key, {})
    q = quality.get(key, {})
    auc = q.get("auc")
    return ArmEvidence(
        n=int(s.get("n") or 0),
        p99_ms=float(s.get("p99_ms") or 0.0),
        bad_rate=float(s.get("bad_rate") or 0.0),
        outcomes=int(q.get("outcomes") or 0),
        auc=None if auc is None else float(auc),
    )


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
    ) -> None:
        self._store = store
        self._routing: RoutingStore = FileRoutingStore(routing) if isinstance(routing, Path) else routing
        self._on_decision = on_decision or (lambda _m, _d: None)
        self._clock = clock
        self.decisions: list[tuple[str, Decision]] = []  # this process's, newest last (bounded)

    def evidence(self, model: str, stable: str, spec: RolloutSpec) -> Evidence:
        db = self._store.database
        since = spec.step_started_s
        stats = {
            (r["model_version"], r["arm"]): r for r in self._store.query(views.arm_stats(db, model, since)).dicts()
        }
        quality = {
            (r["model_version"], r["arm"]): r
            for r in self._store.query(views.outcome_quality(db, model, since)).dicts()
        }
        return Evidence(
            stable=_arm(stats, quality, (stable, "stable")), canary=_arm(stats, quality, (spec.canary, "canary"))
        )

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
                decision = decide(spec, stable, self.evidence(model, stable, spec), now)
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
            json.dumps({**decision.evidence, "canary_weight_after": _weight_after(decision)}, sort_keys=True),
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
