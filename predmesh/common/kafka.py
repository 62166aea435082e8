"""Kafka consumer configuration shared by every service that reads a topic.

`consumer_config(...)` returns librdkafka consumer properties with production timeouts
(librdkafka's own defaults for group membership and fetching, offsets committed by the
caller). Environments that need other values pass `overrides`: services take them
from their settings (`kafka_extra`), and the local tooling passes its dev values
(`predmesh.local.kafka.DEV_CONSUMER_TIMEOUTS`: short session and fetch waits for tansu).
Values may be strings or numbers (librdkafka parses both). Pure function.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# librdkafka defaults, spelled out so that a reader sees what production runs with.
PRODUCTION_CONSUMER_CONFIG: dict[str, str | int | bool] = {
    "session.timeout.ms": 45000,
    "heartbeat.interval.ms": 3000,
    "fetch.wait.max.ms": 500,
    "enable.auto.commit": False,
}


def consumer_config(
    bootstrap_servers: str,
    group_id: str,
    *,
    from_beginning: bool,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Consumer properties: production timeouts, the group, the start offset, then `overrides`."""
    return {
        **PRODUCTION_CONSUMER_CONFIG,
        "bootstrap.servers": bootstrap_servers,
        "group.id": group_id,
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        **(overrides or {}),
    }


def durable_producer_config(
    bootstrap_servers: str,
    client_id: str,
    *,
    delivery_timeout_ms: int = 30000,
    linger_ms: int = 1,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Producer properties for records that must not be lost: acks=all, idempotence (no duplicates
    from retries, per-key order kept). `overrides` may tune anything but those two."""
    locked = sorted(k for k in (overrides or {}) if k in ("acks", "enable.idempotence"))
    if locked:
        raise ValueError(f"producer overrides may not weaken durability: {locked}")
    return {
        "bootstrap.servers": bootstrap_servers,
        "client.id": client_id,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": linger_ms,
        "message.timeout.ms": delivery_timeout_ms,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 1000,
        **(overrides or {}),
    }
