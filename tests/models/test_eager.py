"""Eager versions from the routing table: arms by default, explicit lists, extras, file changes."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from predmesh.models.eager import EagerPolicy, eager_versions
from predmesh.models.registry import ModelVersion
from predmesh.models.spec import parse_spec

from .builders import regressor_spec


def mv(name: str, version: str) -> ModelVersion:
    return ModelVersion(parse_spec(regressor_spec(name, version), "x"), Path("/nowhere"))


def test_arms_are_eager_unless_an_explicit_list_replaces_them() -> None:
    doc = {
        "models": {
            "fraud": {"versions": [{"version": "1", "weight": 90}, {"version": "2", "weight": 10}], "shadow": ["3"]},
            "rare": {"versions": [{"version": "1", "weight": 100}], "eager": []},
            "pinned": {"eager": ["4", 5]},
            "fallback_only": {"fallback": [{"type": "constant", "score": 0.1}]},
        }
    }
    assert eager_versions(doc) == {("fraud", "1"), ("fraud", "2"), ("pinned", "4"), ("pinned", "5")}
    assert eager_versions(None) == set() and eager_versions({"models": []}) == set()


def test_policy_rereads_the_file_when_it_changes_and_adds_extras(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump({"models": {"a": {"versions": [{"version": "1", "weight": 100}]}}}))
    policy = EagerPolicy(path, extra=["b:7"])
    assert policy.is_eager(mv("a", "1")) and policy.is_eager(mv("b", "7")) and not policy.is_eager(mv("a", "2"))
    path.write_text(yaml.safe_dump({"models": {"a": {"versions": [{"version": "2", "weight": 100}]}}}))
    os.utime(path, ns=(1, 1))  # a different mtime even within the clock's resolution
    assert policy.is_eager(mv("a", "2")) and not policy.is_eager(mv("a", "1"))
    assert ("a", "2") in policy.cached


def test_missing_or_broken_file_makes_nothing_eager(tmp_path: Path) -> None:
    assert not EagerPolicy(tmp_path / "missing.yaml").is_eager(mv("a", "1"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [unclosed")
    assert not EagerPolicy(broken).is_eager(mv("a", "1"))
