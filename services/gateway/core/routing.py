"""Per-model routing: weighted versions (canary), shadow versions and a fallback chain.

A `RoutingTable` is immutable; a new table replaces the old one as a whole (see
`services.gateway.core.routing_source`). Canary assignment is deterministic per
(model, entity): the entity's hash picks a bucket in [0, 10000) and versions own
consecutive bucket ranges in the order they are listed, so an entity stays on its version
while weights are unchanged and only the entities in the moved range switch when they change.

File format (YAML or the same as a dict):

    models:
      fraud:
        versions:                     # first entry is the "stable" arm, others "canary"
          - {version: "1", weight: 90}
          - {version: "2", weight: 10}
        shadow: ["2"]                 # scored off the critical path, logged, never returned
        shadow_ratio: 0.1             # fraction of requests shadowed (default 1.0 = all)
        fallback:                     # tried in order when features/model/deadline fail
          - {type: model, model: fraud_ctx}          # must need request-context features only
          - {type: constant, score: 0.04, label: legit, scores: [0.96, 0.04]}
        eager: ["1", "2"]             # optional: versions the orchestrator's model pool keeps
                                      # loaded (default: the versions above); ignored here
        max_missing_features: 0       # stored features that may be missing (defaulted) before the
                                      # answer is degraded/features_missing (core/degradation.py)
        rollout: {canary: "2", steps: [10, 50, 100], ...}  # automated canary analysis: checked here,
                                      # run by the rollout controller (predmesh/common/rollout.py)
        cache: {ttl_s: 30, rules: [{when: {amount: {gt: 1000}}, ttl_s: 2}]}  # prediction cache
                                      # (core/cache.py); no `cache` key = off
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from predmesh.common.rollout import RolloutError, parse_rollout
from services.gateway.core.cache import CachePolicy, CachePolicyError, parse_cache_policy
from services.gateway.core.types import Arm, Score

BUCKETS = 10_000


class RoutingError(ValueError):
    """The routing configuration is invalid; the message names the offending entry."""


@dataclass(frozen=True, slots=True)
class WeightedVersion:
    version: str
    weight: float


@dataclass(frozen=True, slots=True)
class FallbackStep:
    """Either a model (`model` set) or a constant answer (`score` set)."""

    kind: str  # "model" or "constant"
    model: str = ""
    version: str = ""
    score: Score | None = None

    @property
    def label(self) -> str:
        return f"{self.model}:{self.version or 'default'}" if self.kind == "model" else "constant"


@dataclass(frozen=True, slots=True)
class ModelRoute:
    model: str
    versions: tuple[WeightedVersion, ...] = ()
    shadow: tuple[str, ...] = ()
    fallback: tuple[FallbackStep, ...] = ()
    shadow_ratio: float = 1.0
    max_missing_features: int = 0
    cache: CachePolicy | None = None  # None: answers are never cached (the default)

    def assign(self, entity_id: str) -> tuple[str, Arm]:
        """(version, arm) for an entity; ("", STABLE) when no versions are listed."""
        if not self.versions:
            return "", Arm.STABLE
        bucket = entity_bucket(self.model, entity_id)
        upper = 0.0
        for idx, wv in enumerate(self.versions):
            upper += wv.weight * BUCKETS / 100.0
            if bucket < upper:
                return wv.version, Arm.STABLE if idx == 0 else Arm.CANARY
        last = self.versions[-1]
        return last.version, Arm.STABLE if len(self.versions) == 1 else Arm.CANARY


def entity_bucket(model: str, entity_id: str) -> int:
    digest = hashlib.blake2b(f"{model}\x00{entity_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


@dataclass(frozen=True, slots=True)
class RoutingTable:
    routes: Mapping[str, ModelRoute]
    revision: str = "empty"

    def get(self, model: str) -> ModelRoute:
        return self.routes.get(model) or ModelRoute(model)


EMPTY = RoutingTable({})


def _fail(where: str, what: str) -> RoutingError:
    return RoutingError(f"{where}: {what}")


def _version(raw: Any, where: str) -> str:
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise _fail(where, "version must be a string")
    text = str(raw)
    if not text or len(text) > 64:
        raise _fail(where, "version must be 1-64 characters")
    return text


def _parse_versions(raw: Any, where: str) -> tuple[WeightedVersion, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise _fail(where, "versions must be a non-empty list")
    out: list[WeightedVersion] = []
    for i, entry in enumerate(raw):
        here = f"{where}[{i}]"
        if not isinstance(entry, dict) or set(entry) - {"version", "weight"}:
            raise _fail(here, "expected {version, weight}")
        weight = entry.get("weight", 100 if len(raw) == 1 else None)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 100:
            raise _fail(here, "weight must be a number in [0, 100]")
        out.append(WeightedVersion(_version(entry.get("version"), here), float(weight)))
    if len({wv.version for wv in out}) != len(out):
        raise _fail(where, "a version is listed twice")
    total = sum(wv.weight for wv in out)
    if abs(total - 100.0) > 1e-6:
        raise _fail(where, f"weights must sum to 100, got {total:g}")
    return tuple(out)


def _parse_fallback(raw: Any, where: str) -> tuple[FallbackStep, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _fail(where, "fallback must be a list")
    steps: list[FallbackStep] = []
    for i, entry in enumerate(raw):
        here = f"{where}[{i}]"
        if not isinstance(entry, dict):
            raise _fail(here, "expected a mapping")
        kind = entry.get("type")
        if kind == "model":
            if set(entry) - {"type", "model", "version"} or not isinstance(entry.get("model"), str):
                raise _fail(here, "a model step is {type: model, model, version?}")
            version = _version(entry["version"], here) if entry.get("version") is not None else ""
            steps.append(FallbackStep("model", model=entry["model"], version=version))
        elif kind == "constant":
            if set(entry) - {"type", "score", "label", "scores"}:
                raise _fail(here, "a constant step is {type: constant, score, label?, scores?}")
            score = entry.get("score")
            scores = entry.get("scores", [])
            if isinstance(score, bool) or not isinstance(score, int | float):
                raise _fail(here, "score must be a number")
            if not isinstance(scores, list) or not all(isinstance(s, int | float) for s in scores):
                raise _fail(here, "scores must be a list of numbers")
            label = entry.get("label", "")
            if not isinstance(label, str):
                raise _fail(here, "label must be a string")
            steps.append(FallbackStep("constant", score=Score(float(score), tuple(float(s) for s in scores), label)))
        else:
            raise _fail(here, "type must be 'model' or 'constant'")
    return tuple(steps)


def parse_routing(data: Any, revision: str = "") -> RoutingTable:
    """Validate a routing document; raises RoutingError naming the bad entry."""
    if data is None:
        return RoutingTable({}, revision or "empty")
    if not isinstance(data, dict) or set(data) - {"models"}:
        raise RoutingError("routing: expected a mapping with a 'models' key")
    models = data.get("models") or {}
    if not isinstance(models, dict):
        raise RoutingError("routing.models: expected a mapping of model name -> route")
    routes: dict[str, ModelRoute] = {}
    for name, raw in models.items():
        where = f"models.{name}"
        if not isinstance(name, str) or not name:
            raise _fail(where, "model names must be non-empty strings")
        if raw is None:
            raw = {}
        allowed = {
            "versions",
            "shadow",
            "shadow_ratio",
            "fallback",
            "eager",
            "max_missing_features",
            "rollout",
            "cache",
        }
        if not isinstance(raw, dict) or set(raw) - allowed:
            raise _fail(
                where,
                "expected {versions?, shadow?, shadow_ratio?, fallback?, eager?, max_missing_features?, rollout?, "
                "cache?}",
            )
        eager_raw = raw.get("eager") or []  # read by the inference orchestrator's model pools
        if not isinstance(eager_raw, list):
            raise _fail(f"{where}.eager", "expected a list of versions")
        for i, v in enumerate(eager_raw):
            _version(v, f"{where}.eager[{i}]")
        tolerance = raw.get("max_missing_features", 0)
        if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance < 0:
            raise _fail(f"{where}.max_missing_features", "expected a non-negative integer")
        shadow_raw = raw.get("shadow") or []
        if not isinstance(shadow_raw, list):
            raise _fail(f"{where}.shadow", "expected a list of versions")
        shadow = tuple(_version(v, f"{where}.shadow[{i}]") for i, v in enumerate(shadow_raw))
        ratio = raw.get("shadow_ratio", 1.0)
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio <= 1:
            raise _fail(f"{where}.shadow_ratio", "expected a number in [0, 1]")
        fallback = _parse_fallback(raw.get("fallback"), f"{where}.fallback")
        if any(step.kind == "model" and step.model == name for step in fallback):
            raise _fail(f"{where}.fallback", "a model cannot fall back to itself")
        versions = _parse_versions(raw.get("versions"), f"{where}.versions")
        if raw.get("rollout") is not None:
            try:
                parse_rollout(raw["rollout"], f"{where}.rollout", [wv.version for wv in versions])
            except RolloutError as err:
                raise RoutingError(str(err)) from err
        try:
            cache = parse_cache_policy(raw["cache"], f"{where}.cache") if raw.get("cache") is not None else None
        except CachePolicyError as err:
            raise RoutingError(str(err)) from err
        routes[name] = ModelRoute(
            name, versions, shadow, fallback, float(ratio), max_missing_features=tolerance, cache=cache
        )
    return RoutingTable(routes, revision or "inline")
