"""Shared fixtures: real components on loopback ephemeral ports, always torn down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from predmesh.local.procs import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the test session."""
    server = RedisServer(workdir=Path(tmp_path_factory.mktemp("redis")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


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
