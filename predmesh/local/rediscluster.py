"""A real Redis Cluster on loopback: masters and replicas from the same redis-server binary.

`RedisCluster(workdir, masters=3, replicas=1)` owns `masters * (1 + replicas)` cluster-mode
`RedisClusterNode`s (`redis-0`... on free loopback ports, each with its own directory for
`nodes.conf` and, with `persist`, its append-only file). `start()` starts the nodes and
`create()`s the cluster with plain cluster commands (no redis-cli needed): contiguous
slot ranges on the masters (CLUSTER ADDSLOTSRANGE), distinct config epochs, CLUSTER MEET
from the first node, then CLUSTER REPLICATE on each replica; it returns once every node
says `cluster_state:ok`, every slot is covered and every replica's link to its master is up.
`node_timeout_ms` is `cluster-node-timeout`: how long a master may be unreachable before its
replica is promoted (a small value, e.g. 1000 ms, keeps failover tests short). `tls`
(TlsFiles: certificate, key, CA) serves clients, the cluster bus and replication over TLS only,
with client certificates of that CA required; `url` is then `rediss+cluster://`.

The local mesh starts the nodes itself (so its supervisor watches each one) and calls
`create()`. A node restarted in place (same port and directory) rejoins from its
`nodes.conf`: a master that lost a failover comes back as a replica of its successor.
Used from one thread; `stop()` is idempotent.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis

from predmesh.local.procs import RedisServer, free_port, wait_until

SLOTS = 16384


class RedisClusterNode(RedisServer):
    """One cluster-mode redis-server (`cluster-enabled yes`) on a loopback port."""

    def __init__(self, name: str, workdir: Path, node_timeout_ms: int, persist: bool = False, tls: Any = None) -> None:
        self.name = name  # before the base class names the log file after it
        super().__init__(workdir=workdir, persist=persist, tls=tls)
        self.node_timeout_ms = node_timeout_ms
        # The cluster bus defaults to port + 10000, which may be taken or out of range for a free port.
        self.bus_port = free_port()

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}"

    def repick_ports(self) -> bool:
        self.bus_port = free_port()
        return super().repick_ports()

    def command(self) -> Sequence[str]:
        tls = ["--tls-cluster", "yes", "--tls-replication", "yes"] if self.tls is not None else []
        return [
            *super().command(),
            *tls,
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-port",
            str(self.bus_port),
            "--cluster-node-timeout",
            str(self.node_timeout_ms),
            # A replica with a stale link may still be promoted: local clusters favour availability.
            "--cluster-replica-validity-factor",
            "0",
            # Full syncs of a new or returning replica start at once (the default waits 5 s for more replicas).
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
        ]

    def client(self) -> redis.Redis:
        """A plain (non-cluster) connection to this node only (TLS with `tls`); the caller closes it."""
        tls: dict[str, Any] = {}
        if self.tls is not None:
            tls = {
                "ssl": True,
                "ssl_ca_certs": str(self.tls.ca),
                "ssl_certfile": str(self.tls.cert),
                "ssl_keyfile": str(self.tls.key),
            }
        return redis.Redis(host=self.host, port=self.port, socket_timeout=5, decode_responses=True, **tls)


def _seed_url(node: RedisClusterNode) -> str:
    return f"{'rediss' if node.tls else 'redis'}+cluster://{node.host}:{node.port}"


class RedisCluster:
    """Masters + replicas of one Redis Cluster on loopback (see the module docstring)."""

    def __init__(
        self,
        workdir: Path | None = None,
        masters: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
        persist: bool = False,
        tls: Any = None,
    ) -> None:
        if masters < 3:
            raise ValueError("a Redis Cluster needs at least 3 masters to elect a replica after a failure")
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="predmesh-redis-cluster-"))
        self.masters = masters
        self.nodes = [
            RedisClusterNode(f"redis-{i}", self.workdir / f"redis-{i}", node_timeout_ms, persist, tls)
            for i in range(masters * (1 + replicas))
        ]

    @property
    def url(self) -> str:
        """Seed URL for clients (`redis+cluster://`, see predmesh.featurestore.redis_client)."""
        return _seed_url(self.nodes[0])

    def live_url(self) -> str:
        """A seed URL of a running node: after a kill, `url`'s first node may be the dead one."""
        return _seed_url(next(n for n in self.nodes if n.running()))

    def start(self, timeout_s: float = 30.0) -> RedisCluster:
        try:
            with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
                list(pool.map(lambda node: node.start(), self.nodes))
            self.create(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def create(self, timeout_s: float = 30.0) -> None:
        """Assign slots, join the nodes, attach the replicas; wait until the cluster is healthy."""
        clients = [node.client() for node in self.nodes]
        try:
            masters, replicas = clients[: self.masters], clients[self.masters :]
            for index, client in enumerate(masters):
                first = index * SLOTS // self.masters
                last = (index + 1) * SLOTS // self.masters - 1
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
            for epoch, client in enumerate(clients, start=1):
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
            for node in self.nodes[1:]:
                clients[0].execute_command("CLUSTER", "MEET", node.host, node.port, node.bus_port)
            ids = [client.execute_command("CLUSTER", "MYID") for client in clients]
            wait_until(lambda: all(_knows(c, ids) for c in clients), timeout_s, "redis cluster handshake")
            for index, client in enumerate(replicas):
                client.execute_command("CLUSTER", "REPLICATE", ids[index % self.masters])
        finally:
            for client in clients:
                client.close()
        self.wait_healthy(timeout_s)

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        """Until every running node reports state ok with all slots, and every replica is in sync."""
        wait_until(self.healthy, timeout_s, "redis cluster state ok")

    def healthy(self) -> bool:
        for node in self.nodes:
            if not node.running():
                continue
            client = node.client()
            try:
                info = _cluster_info(client)
                if info.get("cluster_state") != "ok" or int(info.get("cluster_slots_ok", 0)) != SLOTS:
                    return False
                replication = client.info("replication")
                if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                    return False
            finally:
                client.close()
        return True

    def master_of(self, key: str) -> RedisClusterNode:
        """The running node that serves `key`'s slot now (asked of the cluster, not assumed)."""
        for node in self.nodes:
            if not node.running():
                continue
            client = node.client()
            try:
                slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
                for first, last, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                    if first <= slot <= last:
                        return self._by_port(int(master[1]))
            finally:
                client.close()
        raise RuntimeError("no running node of the cluster answered")

    def masters_now(self) -> list[RedisClusterNode]:
        """Running nodes that serve slots now."""
        node = next(n for n in self.nodes if n.running())
        client = node.client()
        try:
            return [self._by_port(int(master[1])) for _, _, master, *_ in client.execute_command("CLUSTER", "SLOTS")]
        finally:
            client.close()

    def move_slot(self, slot: int, target: RedisClusterNode) -> None:
        """Reshard: move `slot` and its keys from its master to master `target` (what redis-cli
        --cluster reshard does per slot); clients with the old slot map then get MOVED."""
        source = next(m for m in self.masters_now() if slot in self.slots_of(m))
        src, dst = source.client(), target.client()
        try:
            src_id, dst_id = src.execute_command("CLUSTER", "MYID"), dst.execute_command("CLUSTER", "MYID")
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
            while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                src.execute_command("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys)
            for master in self.masters_now():
                client = master.client()
                try:
                    client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
                finally:
                    client.close()
        finally:
            src.close()
            dst.close()

    def slots_of(self, master: RedisClusterNode) -> set[int]:
        client = master.client()
        try:
            return {
                slot
                for first, last, owner, *_ in client.execute_command("CLUSTER", "SLOTS")
                if int(owner[1]) == master.port
                for slot in range(first, last + 1)
            }
        finally:
            client.close()

    def _by_port(self, port: int) -> RedisClusterNode:
        return next(n for n in self.nodes if n.port == port)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _cluster_info(client: redis.Redis) -> dict[str, str]:
    text = str(client.execute_command("CLUSTER", "INFO"))
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def _knows(client: redis.Redis, ids: Sequence[str]) -> bool:
    """`client`'s node sees every id, none of them still in handshake."""
    text = str(client.execute_command("CLUSTER", "NODES"))
    known = {line.split()[0] for line in text.splitlines() if line.strip() and "handshake" not in line}
    return set(ids) <= known


def wait_for_failover(cluster: RedisCluster, key: str, old: RedisClusterNode, timeout_s: float = 15.0) -> None:
    """Until another node serves `key`'s slot and the cluster reports ok (after `old` died)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if cluster.master_of(key) is not old and _state_ok(cluster):
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"no failover of {old.name} within {timeout_s:.0f}s")


def _state_ok(cluster: RedisCluster) -> bool:
    for node in cluster.nodes:
        if node.running():
            client = node.client()
            try:
                if _cluster_info(client).get("cluster_state") != "ok":
                    return False
            finally:
                client.close()
    return True
