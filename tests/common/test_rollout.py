"""The routing table's `rollout` block: validation (also through the gateway's parser) and the atomic rewrite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from predmesh.common.rollout import RolloutError, parse_rollout, rewrite_routing, rollouts
from services.gateway.core.routing import RoutingError, parse_routing

ROUTE: dict[str, Any] = {
    "versions": [{"version": "1", "weight": 90}, {"version": "2", "weight": 10}],
    "rollout": {"canary": "2", "steps": [10, 50, 100], "min_duration_s": 1, "min_requests": 5},
}


def test_valid_rollout_parses_with_defaults() -> None:
    spec = parse_rollout(ROUTE["rollout"], "r", ["1", "2"])
    assert (spec.canary, spec.steps, spec.state, spec.step, spec.weight) == (
        "2",
        (10.0, 50.0, 100.0),
        "running",
        0,
        10.0,
    )
    assert spec.max_p99_increase_pct == 10.0
    parse_routing({"models": {"fraud": ROUTE}})  # the gateway accepts the key


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"canary": "9"}, "canary"),
        ({"steps": [50, 10]}, "steps"),
        ({"steps": [0, 100]}, "steps"),
        ({"state": "exploded"}, "state"),
        ({"max_bad_rate": 2}, "max_bad_rate"),
        ({"min_requests": -1}, "min_requests"),
        ({"step": 3}, "step"),
        ({"surprise": 1}, "unknown"),
    ],
)
def test_invalid_rollouts_name_the_entry(change: dict, message: str) -> None:
    with pytest.raises(RolloutError, match=message):
        parse_rollout({**ROUTE["rollout"], **change}, "models.fraud.rollout", ["1", "2"])
    with pytest.raises(RoutingError, match=message):
        parse_routing({"models": {"fraud": {**ROUTE, "rollout": {**ROUTE["rollout"], **change}}}})


def test_finished_rollout_need_not_list_the_canary() -> None:
    spec = parse_rollout({**ROUTE["rollout"], "state": "rolled_back"}, "r", ["1"])
    assert spec.state == "rolled_back"


def test_rewrite_is_atomic_and_skippable(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump({"models": {"fraud": ROUTE}}))
    before = path.read_text()
    assert not rewrite_routing(path, lambda doc: False)
    assert path.read_text() == before

    def pause(doc: dict) -> bool:
        doc["models"]["fraud"]["rollout"]["state"] = "paused"
        return True

    assert rewrite_routing(path, pause)
    assert rollouts(yaml.safe_load(path.read_text()))["fraud"].state == "paused"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["routing.yaml", "routing.yaml.lock"]  # no temp left
