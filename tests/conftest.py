"""Shared fixtures: real components on loopback ephemeral ports, always torn down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from predmesh.local.kafka import TansuBroker
from predmesh.local.procs import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the test session."""
    server = RedisServer(workdir=Path(tmp_path_factory.mktemp("redis")))
    with server:  # start() now, stop() at the end of the session
        yield server


@pytest.fixture(scope="session")
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """One real tansu broker for the test session (tests use their own topic and group names)."""
    broker = TansuBroker(workdir=Path(tmp_path_factory.mktemp("tansu")))
    with broker:  # start() now, stop() at the end of the session
        yield broker


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """URL of a flushed database on the session's real redis-server."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    try:
        yield redis_server.url
    finally:
        client.flushdb()
        client.close()
