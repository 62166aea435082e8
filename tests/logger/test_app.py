"""LoggerApp lifecycle: a start that fails midway stops the journal writer and delivery threads."""

from __future__ import annotations

from pathlib import Path

import pytest

from predmesh.local.procs import free_port
from services.logger.app import LoggerApp
from tests.common.lifecycle_support import assert_failed_start_leaks_nothing
from tests.logger.logger_support import Topics, logger_settings


async def test_failed_start_stops_the_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = logger_settings(
        tmp_path / "journal", f"127.0.0.1:{free_port()}", Topics("p", "s"), flush_timeout_s=0.2, grace_s=0.1
    )
    await assert_failed_start_leaks_nothing(LoggerApp(settings), monkeypatch)
    # The journal was closed: a new logger can open it and serve.
    app = LoggerApp(settings)
    monkeypatch.undo()
    await app.start()
    await app.stop()
