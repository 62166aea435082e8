"""The import contracts in pyproject.toml hold on the tree, and fail on a deliberately wrong import.

Each wrong import is added to a temporary copy of the packages, and `lint-imports` must
then report the contract it breaks (so a contract that cannot fail is caught here).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # runs lint-imports in subprocesses (~2 s each)

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pristine copy of what the contracts analyse (packages + pyproject.toml)."""
    dst = tmp_path_factory.mktemp("tree") / "pristine"
    dst.mkdir()
    for name in ("predmesh", "services", "bench"):
        shutil.copytree(ROOT / name, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(ROOT / "pyproject.toml", dst / "pyproject.toml")
    return dst


def test_contracts_hold_on_the_tree() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


# (file to edit, import to append, contract name expected to break)
WRONG_IMPORTS = [
    ("services/monitor/app.py", "from predmesh.local.kafka import DEV_CONSUMER_CONFIG", "library (predmesh.common"),
    ("predmesh/common/deadline.py", "import services.gateway.settings", "library (predmesh.common"),
    ("predmesh/clients/logger.py", "from services.logger.core import events", "library (predmesh.common"),
    ("services/gateway/transport/logsink.py", "from services.logger.core.events import route", "a service never"),
    ("services/features/core/cache.py", "import grpc", "service cores hold"),
    ("services/ortworker/app.py", "from services.inference.core import batcher", "a service never"),
    ("services/ingest/core/writer.py", "from services.features.core import store", "a service never"),
    ("predmesh/models/pool.py", "from services.inference import metrics", "library (predmesh.common"),
]


@pytest.mark.parametrize(("path", "line", "contract"), WRONG_IMPORTS, ids=[w[0] for w in WRONG_IMPORTS])
def test_a_wrong_import_breaks_its_contract(
    tree_copy: Path, tmp_path: Path, path: str, line: str, contract: str
) -> None:
    root = tmp_path / "tree"
    shutil.copytree(tree_copy, root)
    target = root / path
    target.write_text(target.read_text() + f"\n{line}  # deliberately wrong\n")
    result = _lint_imports(root)
    assert result.returncode != 0, result.stdout
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout
    assert path.removesuffix(".py").replace("/", ".") in broken
