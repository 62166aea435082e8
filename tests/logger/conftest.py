"""Logger fixtures: a broker of one test and in-process loggers, always torn down.

The session's shared broker is the `tansu` fixture of tests/conftest.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from logger_support import RunLogger, Topics, logger_settings

from predmesh.local.kafka import TansuBroker
from services.logger.app import LoggerApp


@pytest.fixture
def own_tansu(tmp_path: Path) -> Iterator[TansuBroker]:
    """A broker of this test alone (not started), for tests that stop and restart it."""
    broker = TansuBroker(workdir=tmp_path / "tansu")
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def topics() -> Topics:
    tag = uuid.uuid4().hex[:8]
    return Topics(f"predictions-{tag}", f"shadow-predictions-{tag}")


@pytest.fixture
def run_logger(tmp_path: Path) -> RunLogger:
    """`async with run_logger(bootstrap, topics, **settings) as app:` an in-process logger, always stopped."""

    @asynccontextmanager
    async def run(bootstrap: str, topics: Topics, **overrides: Any) -> AsyncIterator[LoggerApp]:
        overrides.setdefault("journal_dir", tmp_path / "journal")
        journal_dir = overrides.pop("journal_dir")
        app = LoggerApp(logger_settings(journal_dir, bootstrap, topics, **overrides))
        await app.start()
        try:
            yield app
        finally:
            await app.stop()

    return run
