"""bench.systems: the compare table's specs, what a row needs, its targets, CPU columns."""

from __future__ import annotations

import pytest

from bench.systems import COLUMNS, SYSTEMS, Component, components_of, cpu_columns, missing, sessions_for, target_for


def test_specs_are_unique_and_name_known_columns() -> None:
    assert len({s.key for s in SYSTEMS}) == len(SYSTEMS)
    for spec in SYSTEMS:
        assert spec.group in {"end-to-end", "model", "features"}
        for column, _ in spec.parts:
            assert column == "*" or column in COLUMNS
    keys = {s.key for s in SYSTEMS}
    # the comparison: our rows and every peer
    assert {"predmesh-full", "fastapi-naive", "ray-serve", "mlserver", "triton", "feast-server"} <= keys


def _started(*names: str) -> dict[str, Component]:
    return {n: Component(n, f"127.0.0.1:{i + 1000}", [i + 100]) for i, n in enumerate(names)}


def test_a_row_runs_only_when_its_components_started() -> None:
    full = next(s for s in SYSTEMS if s.key == "predmesh-full")
    needed = components_of(full)
    assert needed[0] == "envoy" and {"gateway", "features", "inference", "logger", "broker", "redis"} <= set(needed)
    assert missing(full, _started(*needed)) == []
    assert missing(full, _started(*[n for n in needed if n != "broker"])) == ["broker"]


@pytest.mark.parametrize("spec", SYSTEMS, ids=lambda s: s.key)
def test_every_kind_builds_a_target(spec) -> None:  # type: ignore[no-untyped-def]
    started = _started(*components_of(spec))
    if spec.target == "ray":
        started["ray"].classify = lambda cmdline: "edge"
    target = target_for(spec, started, "fraud", "1", "/models")
    assert target.factory.startswith("bench.targets:make_")
    address = started[spec.target].address
    assert address in (target.kwargs.get("address"), target.kwargs.get("url"))
    if spec.kind == "v2":  # Triton serves every version: an unpinned request goes to the newest
        assert target.kwargs["served_version"] == "1"


def test_sessions_per_column_and_whole_session_classifier() -> None:
    ray = next(s for s in SYSTEMS if s.key == "ray-serve")
    started = _started("ray", "redis")
    started["ray"].classify = lambda cmdline: "edge" if "Proxy" in cmdline else "other"
    sessions, classify = sessions_for(ray, started)
    assert sessions == {"*ray": [100], "redis": [101]}
    assert classify is not None
    assert classify("*ray", "ray::ProxyActor") == "edge"
    assert classify("*ray", "raylet") == "other"
    assert classify("redis", "redis-server") == "redis"
    with pytest.raises(ValueError, match="classifier"):
        sessions_for(ray, _started("ray", "redis"))
    plain, none = sessions_for(next(s for s in SYSTEMS if s.key == "predmesh-features"), _started("features", "redis"))
    assert plain == {"features": [100], "redis": [101]} and none is None


def test_cpu_columns_sum_servers_without_the_client() -> None:
    out = cpu_columns({"gateway": 300.0, "redis": 50.0, "client": 200.0, "unknown": 9.0})
    assert out["servers"] == 350.0 and out["total"] == 550.0 and "unknown" not in out
