"""tests/conftest.py marks every test unit, integration or e2e (so tests added later are marked too)."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from predmesh.local.procs import free_port
from tests.conftest import TESTS_DIR, marker_for


def _module(**names: object) -> types.ModuleType:
    module = types.ModuleType("fake_test_module")
    vars(module).update(names)
    return module


def test_e2e_by_directory() -> None:
    assert marker_for(TESTS_DIR / "e2e" / "test_new.py", (), _module()) == "e2e"


def test_integration_by_real_component_fixture() -> None:
    path = TESTS_DIR / "features" / "test_new.py"
    assert marker_for(path, ("tmp_path", "redis_url"), _module()) == "integration"
    assert marker_for(path, ("demo_models",), _module()) == "integration"


def test_integration_when_the_module_drives_processes() -> None:
    import subprocess  # not at module level: this module itself is a unit test module

    from predmesh.local.procs import PythonService

    path = TESTS_DIR / "logger" / "test_new.py"
    assert marker_for(path, (), _module(PythonService=PythonService)) == "integration"
    assert marker_for(path, (), _module(subprocess=subprocess)) == "integration"


def test_unit_otherwise() -> None:
    path = TESTS_DIR / "gateway" / "test_new.py"
    assert marker_for(path, ("tmp_path", "monkeypatch"), _module(free_port=free_port, Path=Path)) == "unit"


def test_this_test_was_marked_unit(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("unit") is not None
    assert request.node.get_closest_marker("integration") is None
