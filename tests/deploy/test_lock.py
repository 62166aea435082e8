"""The hashed locks (requirements/*.txt) agree with pyproject.toml, and the installers use them.

scripts/lock.py --check is offline: fingerprint of the dependency lists each lock was compiled
from, every direct requirement (with its extras) locked at a version its specifier accepts,
every pin hashed, the dev lock keeping every runtime pin, and requirements/otel-proto.txt equal
to runtime.txt's opentelemetry-proto pin.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _lock_module() -> Any:
    spec = importlib.util.spec_from_file_location("predmesh_lock", ROOT / "scripts" / "lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


lock = _lock_module()


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """A copy of pyproject.toml and requirements/ to break on purpose."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    return tmp_path


def test_locks_are_consistent_with_pyproject() -> None:
    assert lock.check(ROOT) == []


def test_every_direct_dependency_is_pinned_with_hashes() -> None:
    pins = lock.parse_lock((ROOT / "requirements" / "runtime.txt").read_text())
    for req in lock.requirements_of(lock.load_pyproject(), ()):
        pin = pins[lock.canonicalize_name(req.name)]
        assert req.specifier.contains(pin.version, prereleases=True), (req, pin.version)
        assert pin.hashes, f"{pin.name} has no hash"


def test_a_new_dependency_without_relock_is_detected(tree: Path) -> None:
    text = (tree / "pyproject.toml").read_text()
    (tree / "pyproject.toml").write_text(text.replace('"pyyaml>=6",', '"pyyaml>=6",\n  "not-locked-anywhere>=1",', 1))
    problems = lock.check(tree)
    assert any("compiled from another pyproject.toml" in p for p in problems), problems
    assert any("not-locked-anywhere>=1 is not locked" in p for p in problems), problems


def test_a_pin_outside_the_specifier_is_detected(tree: Path) -> None:
    runtime = tree / "requirements" / "runtime.txt"
    runtime.write_text(re.sub(r"^numpy==\S+", "numpy==2.0.0", runtime.read_text(), flags=re.M))
    problems = lock.check(tree)
    assert any("numpy==2.0.0 does not satisfy" in p for p in problems), problems
    assert any("dev.txt: numpy differs from runtime.txt" in p for p in problems), problems


def test_an_unhashed_pin_and_a_stale_otel_pin_are_detected(tree: Path) -> None:
    otel = tree / "requirements" / "otel-proto.txt"
    otel.write_text(re.sub(r"--hash=sha256:[0-9a-f]{64}", "--hash=sha256:" + "0" * 64, otel.read_text()))
    dev = tree / "requirements" / "dev.txt"
    dev.write_text(re.sub(r"^(pytest==\S+) \\\n(\s+--hash=\S+( \\)?\n)+", r"\1\n", dev.read_text(), flags=re.M))
    problems = lock.check(tree)
    assert any("otel-proto.txt: differs" in p for p in problems), problems
    assert any(re.match(r"dev\.txt: pytest==\S+ has no hash", p) for p in problems), problems


def test_installers_use_the_locks_with_hashes() -> None:
    dev = (ROOT / "dev").read_text()
    assert "--require-hashes -r requirements/dev.txt" in dev
    assert "--require-hashes --no-deps --force-reinstall -r requirements/otel-proto.txt" in dev
    containerfile = (ROOT / "Containerfile").read_text()
    assert re.search(r"--require-hashes[^\n]*\\\n\s+-r /tmp/requirements/runtime\.txt", containerfile)
    assert re.search(
        r"--require-hashes[^\n]*--force-reinstall[^\n]*\\\n\s+-r /tmp/requirements/otel-proto\.txt", containerfile
    )
