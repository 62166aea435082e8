"""predmesh.common.runner.run_loop: the event loop a service's main() runs on."""

from __future__ import annotations

import asyncio

import pytest

from predmesh.common.runner import run_loop
from predmesh.common.settings import ServerSettings


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_run_loop_uses_uvloop_when_asked_and_installed() -> None:
    pytest.importorskip("uvloop")  # a third-party extra, not our code
    assert run_loop(_loop_module(), use_uvloop=True).startswith("uvloop")


def test_run_loop_without_uvloop_runs_asyncio_loop() -> None:
    assert run_loop(_loop_module(), use_uvloop=False).startswith("asyncio")


def test_uvloop_setting_is_on_by_default_and_read_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServerSettings().uvloop is True

    class Svc(ServerSettings):
        model_config = {"env_prefix": "PREDMESH_SVC_"}

    monkeypatch.setenv("PREDMESH_SVC_UVLOOP", "false")
    assert Svc().uvloop is False
