"""A first start whose port another process took meanwhile (a real redis-server, a real listening
socket): retried on new ports when the port was ours to choose, an error when the caller named it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from predmesh.local.procs import PortTaken, RedisServer
from predmesh.local.rediscluster import RedisClusterNode


@pytest.fixture
def taken() -> Iterator[int]:
    """A port with a listener on it (as another test's server would hold it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_chosen_port_taken_before_the_first_start_is_replaced(tmp_path: Path, taken: int) -> None:
    server = RedisServer(workdir=tmp_path / "redis")
    server.port = taken  # as if free_port's answer had been bound by someone else since
    try:
        server.start()
        assert server.port != taken
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.close()
        assert "Address already in use" in server.log_path.read_text()  # the first try did fail
    finally:
        server.stop()


def test_a_cluster_node_repicks_both_of_its_ports(tmp_path: Path, taken: int) -> None:
    node = RedisClusterNode("redis-0", tmp_path / "node", node_timeout_ms=1000)
    node.bus_port = taken
    try:
        node.start()
        assert node.bus_port != taken and node.running()
    finally:
        node.stop()


def test_a_port_named_by_the_caller_is_never_changed(tmp_path: Path, taken: int) -> None:
    server = RedisServer(port=taken, workdir=tmp_path / "redis")
    with pytest.raises(PortTaken):
        server.start()
    assert server.port == taken and not server.running()


def test_a_restart_keeps_its_port(tmp_path: Path) -> None:
    server = RedisServer(workdir=tmp_path / "redis")
    server.start()
    port = server.port
    server.crash()
    server.reap()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()  # someone took the port while the server was down: clients know only this port
        with pytest.raises(PortTaken):
            server.start()
    assert server.port == port
