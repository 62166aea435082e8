"""Automated rollouts: the `rollout` block of a routing-table route, and its atomic rewrite.

A route may declare a rollout of one canary version (routing.yaml):

    models:
      fraud:
        versions: [{version: "1", weight: 95}, {version: "3", weight: 5}]
        rollout:
          canary: "3"              # the version rolled out; the first listed version is stable
          steps: [5, 25, 50, 100]  # canary weight per step (%); reaching 100 completes the rollout
          min_duration_s: 300      # a step lasts at least this long ...
          min_requests: 500        # ... and sees at least this many canary predictions
          max_p99_increase_pct: 10 # canary p99 latency <= stable p99 * (1 + pct/100) + p99_slack_ms
          p99_slack_ms: 1.0
          max_bad_rate: 0.001      # canary error+degraded rate below this
          max_auc_drop: 0.05       # canary AUC >= stable AUC - this, once both arms have ...
          min_outcomes: 200        # ... this many predictions joined to outcomes
          # written by the controller and `predmesh rollout`, not by people:
          state: running           # running | paused | promoted | rolled_back | aborted
          step: 0                  # index into steps
          step_started_s: 0        # unix time the current step began (0 = not yet)

The gateway only checks the block's shape (`parse_rollout`); the rollout controller
(services/sink/core/controller.py) evaluates it and rewrites the file through
`rewrite_routing`: under an exclusive lock on `<file>.lock`, read, change, write a temporary
file next to it and rename it over the original (a reader never sees a half-written table;
the gateway's FileWatcher applies the new revision). Pure functions apart from `rewrite_routing`.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

STATES = ("running", "paused", "promoted", "rolled_back", "aborted")
ACTIVE = ("running", "paused")


class RolloutError(ValueError):
    """The rollout block is invalid; the message names the offending entry."""


@dataclass(frozen=True, slots=True)
class RolloutSpec:
    canary: str
    steps: tuple[float, ...]
    min_duration_s: float = 300.0
    min_requests: int = 500
    max_p99_increase_pct: float = 10.0
    p99_slack_ms: float = 1.0
    max_bad_rate: float = 0.001
    max_auc_drop: float = 0.05
    min_outcomes: int = 200
    state: str = "running"
    step: int = 0
    step_started_s: float = 0.0

    @property
    def weight(self) -> float:
        """Canary weight of the current step (%)."""
        return self.steps[min(self.step, len(self.steps) - 1)]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["steps"] = list(self.steps)
        return out


_NUMBERS = {
    "min_duration_s": (0.0, None),
    "max_p99_increase_pct": (0.0, None),
    "p99_slack_ms": (0.0, None),
    "max_bad_rate": (0.0, 1.0),
    "max_auc_drop": (0.0, 1.0),
    "step_started_s": (0.0, None),
}
_INTEGERS = ("min_requests", "min_outcomes", "step")


def parse_rollout(raw: Any, where: str, versions: list[str]) -> RolloutSpec:
    """Validate a route's `rollout` block against the route's listed `versions` (stable first)."""
    if not isinstance(raw, dict):
        raise RolloutError(f"{where}: expected a mapping")
    unknown = set(raw) - {f.name for f in fields(RolloutSpec)}
    if unknown:
        raise RolloutError(f"{where}: unknown key(s) {sorted(unknown)}")
    canary = raw.get("canary")
    if isinstance(canary, bool) or not isinstance(canary, str | int) or not str(canary):
        raise RolloutError(f"{where}.canary: expected a version")
    canary = str(canary)
    state = raw.get("state", "running")
    if state not in STATES:
        raise RolloutError(f"{where}.state: expected one of {list(STATES)}")
    if state in ACTIVE and (len(versions) < 2 or canary not in versions[1:]):
        raise RolloutError(f"{where}.canary: version {canary!r} must be listed in versions after the stable one")
    steps = raw.get("steps")
    if (
        not isinstance(steps, list)
        or not steps
        or not all(not isinstance(s, bool) and isinstance(s, int | float) and 0 < s <= 100 for s in steps)
        or any(b <= a for a, b in itertools.pairwise(steps))
    ):
        raise RolloutError(f"{where}.steps: expected increasing percentages in (0, 100]")
    values: dict[str, Any] = {}
    for name, (low, high) in _NUMBERS.items():
        if name in raw:
            value = raw[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
                raise RolloutError(f"{where}.{name}: expected a number >= {low:g}")
            if high is not None and value > high:
                raise RolloutError(f"{where}.{name}: expected a number <= {high:g}")
            values[name] = float(value)
    for name in _INTEGERS:
        if name in raw:
            value = raw[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise RolloutError(f"{where}.{name}: expected a non-negative integer")
            values[name] = value
    spec = RolloutSpec(canary=canary, steps=tuple(float(s) for s in steps), state=state, **values)
    if spec.step >= len(spec.steps):
        raise RolloutError(f"{where}.step: beyond the last step")
    return spec


def rollouts(document: Any) -> dict[str, RolloutSpec]:
    """Every model's rollout in a routing document (validated), by model name."""
    out: dict[str, RolloutSpec] = {}
    models = (document or {}).get("models") or {}
    for name, route in models.items():
        if isinstance(route, dict) and route.get("rollout") is not None:
            versions = [str(v.get("version")) for v in route.get("versions") or [] if isinstance(v, dict)]
            out[name] = parse_rollout(route["rollout"], f"models.{name}.rollout", versions)
    return out


def stable_version(document: Any, model: str) -> str:
    versions = document["models"][model].get("versions") or []
    return str(versions[0]["version"]) if versions else ""


def set_weights(document: dict[str, Any], model: str, weights: list[tuple[str, float]]) -> None:
    """Replace `model`'s versions with `weights` [(version, %)], stable first (in place)."""
    document["models"][model]["versions"] = [{"version": v, "weight": w} for v, w in weights]


def set_rollout(document: dict[str, Any], model: str, spec: RolloutSpec) -> None:
    document["models"][model]["rollout"] = spec.to_dict()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, fsync it and rename it over `path`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def rewrite_routing(path: Path, change: Callable[[dict[str, Any]], bool]) -> bool:
    """Under the file's lock: load the routing document, let `change` edit it in place and, when it
    returns True, replace the file atomically. Returns whether the file was rewritten (blocking)."""
    with _locked(path):
        document = yaml.safe_load(path.read_text()) or {}
        if not change(document):
            return False
        write_atomically(path, yaml.safe_dump(document, sort_keys=False))
        return True
