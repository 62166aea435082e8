"""Canary analysis: one rollout step's evidence in, one decision out. Pure, no I/O.

`decide(spec, evidence, now_s)` compares the canary arm with the stable arm over the current
step (both measured since `spec.step_started_s`) and returns a `Decision`:

- `hold`: paused, too few canary requests yet, a criterion without a measurement (insufficient
  evidence: e.g. Prometheus had no p99 for an arm yet), or the step's minimum duration has not passed;
- `rollback`: a criterion failed (as soon as the canary has `min_requests` predictions, so a
  bad canary is rolled back within its step, not at its end);
- `promote`: every criterion passed for `min_duration_s` and `min_requests`; the next step's
  weight, or 100 % and state `promoted` when the next step is the last (100).

Criteria (each reported with value, threshold and verdict in `Decision.evidence`):
p99 latency <= stable p99 * (1 + max_p99_increase_pct/100) + p99_slack_ms (insufficient while the
stable arm, which still takes 100 - weight % of the traffic, has no measured requests);
error+degraded rate <= max_bad_rate; AUC >= stable AUC - max_auc_drop, only
when both arms have >= min_outcomes outcomes (until then it is reported as pending).
A value that is None (not measured) makes its criterion `insufficient`: never a rollback and never a
promotion on it. Each criterion names the `source` of its value (`analytics` | `prometheus`:
services/sink/core/evidence.py), and each arm's evidence lists the source of every value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from predmesh.common.rollout import RolloutSpec


@dataclass(frozen=True, slots=True)
class ArmEvidence:
    n: int = 0
    p99_ms: float | None = 0.0  # None: not measured (insufficient evidence)
    bad_rate: float | None = 0.0  # None: not measured
    outcomes: int = 0
    auc: float | None = None
    sources: Mapping[str, str] = field(default_factory=dict)  # value name -> analytics | prometheus


@dataclass(frozen=True, slots=True)
class Evidence:
    stable: ArmEvidence
    canary: ArmEvidence


@dataclass(frozen=True, slots=True)
class Decision:
    action: str  # hold | promote | rollback
    reason: str
    spec: RolloutSpec  # the rollout after the decision
    weights: list[tuple[str, float]] = field(default_factory=list)  # new versions (empty = unchanged)
    evidence: dict[str, Any] = field(default_factory=dict)


def _insufficient(value: float | None) -> dict[str, Any]:
    return {"value": value, "threshold": None, "ok": None, "insufficient": True}


def _criteria(spec: RolloutSpec, ev: Evidence) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    stable_p99, canary_p99 = ev.stable.p99_ms, ev.canary.p99_ms
    if ev.stable.n == 0 and ev.canary.n > 0 and spec.weight < 100:
        # the stable arm still takes traffic in this step: no stable data is missing data, not a pass
        out["p99_latency_ms"] = _insufficient(canary_p99)
    elif ev.stable.n > 0:
        if stable_p99 is None or canary_p99 is None:
            out["p99_latency_ms"] = _insufficient(canary_p99)
        else:
            limit = stable_p99 * (1 + spec.max_p99_increase_pct / 100) + spec.p99_slack_ms
            out["p99_latency_ms"] = {"value": canary_p99, "threshold": limit, "ok": canary_p99 <= limit}
    bad = ev.canary.bad_rate
    if bad is None:
        out["bad_rate"] = _insufficient(None)
    else:
        out["bad_rate"] = {"value": bad, "threshold": spec.max_bad_rate, "ok": bad <= spec.max_bad_rate}
    enough = min(ev.stable.outcomes, ev.canary.outcomes) >= spec.min_outcomes
    if enough and ev.stable.auc is not None and ev.canary.auc is not None:
        limit = ev.stable.auc - spec.max_auc_drop
        out["auc"] = {"value": ev.canary.auc, "threshold": limit, "ok": ev.canary.auc >= limit}
    else:
        out["auc"] = {"value": ev.canary.auc, "threshold": None, "ok": None, "pending": True}
    for name, key in (("p99_latency_ms", "p99_ms"), ("bad_rate", "bad_rate"), ("auc", "auc")):
        source = ev.canary.sources.get(key)
        if name in out and source:
            out[name]["source"] = source
    return out


def _arm(arm: ArmEvidence) -> dict[str, Any]:
    out: dict[str, Any] = {
        "n": arm.n,
        "p99_ms": arm.p99_ms,
        "bad_rate": arm.bad_rate,
        "outcomes": arm.outcomes,
        "auc": arm.auc,
    }
    if arm.sources:
        out["sources"] = dict(sorted(arm.sources.items()))
    return out


def decide(spec: RolloutSpec, stable_version: str, ev: Evidence, now_s: float) -> Decision:
    criteria = _criteria(spec, ev)
    evidence = {
        "step": spec.step,
        "weight": spec.weight,
        "elapsed_s": round(now_s - spec.step_started_s, 3),
        "stable": _arm(ev.stable),
        "canary": _arm(ev.canary),
        "criteria": criteria,
    }
    if spec.state != "running":
        return Decision("hold", f"rollout is {spec.state}", spec, evidence=evidence)
    if ev.canary.n < spec.min_requests:
        return Decision("hold", f"{ev.canary.n}/{spec.min_requests} canary requests", spec, evidence=evidence)
    failed = [name for name, c in criteria.items() if c["ok"] is False]
    if failed:
        return Decision(
            "rollback",
            "failed: " + ", ".join(failed),
            replace(spec, state="rolled_back"),
            [(stable_version, 100.0)],
            evidence,
        )
    missing = [name for name, c in criteria.items() if c.get("insufficient")]
    if missing:
        return Decision("hold", "insufficient evidence: " + ", ".join(missing), spec, evidence=evidence)
    if now_s - spec.step_started_s < spec.min_duration_s:
        return Decision("hold", "step minimum duration not reached", spec, evidence=evidence)
    nxt = spec.step + 1
    if nxt >= len(spec.steps) or spec.steps[nxt] >= 100:
        done = replace(spec, state="promoted", step=min(nxt, len(spec.steps) - 1), step_started_s=now_s)
        return Decision("promote", "all steps passed: canary at 100%", done, [(spec.canary, 100.0)], evidence)
    weight = spec.steps[nxt]
    return Decision(
        "promote",
        f"step {spec.step} passed: canary {spec.weight:g}% -> {weight:g}%",
        replace(spec, step=nxt, step_started_s=now_s),
        [(stable_version, 100.0 - weight), (spec.canary, weight)],
        evidence,
    )


def start(spec: RolloutSpec, stable_version: str, now_s: float) -> Decision:
    """The first step of a rollout that has not started (`step_started_s` 0): its weights."""
    begun = replace(spec, step_started_s=now_s)
    weight = spec.weight
    return Decision(
        "start",
        f"rollout of {spec.canary} started at {weight:g}%",
        begun,
        [(stable_version, 100.0 - weight), (spec.canary, weight)],
        {"step": spec.step, "weight": weight},
    )
