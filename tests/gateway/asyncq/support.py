"""Shared pieces of the durable async tests: per-test topics and group, gateway settings (in
process and as a subprocess environment), a callback/upstream fake that can hold inference,
and a reader of a topic on the real broker (count messages, never trust tansu watermarks)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
from confluent_kafka import Consumer

from predmesh.local.kafka import DEV_CONSUMER_CONFIG, DEV_CONSUMER_TIMEOUTS, create_topics
from predmesh.v1 import inference_pb2
from services.gateway.settings import GatewaySettings
from tests.gateway.transport.upstream_fakes import Upstreams

KEYS: dict[str, Any] = {
    "fraud-key": {"models": ["fraud", "nope"], "name": "team-a"},
    "other-key": {"models": ["fraud"], "name": "team-b"},
}
AUTH = (("x-api-key", "fraud-key"),)


@dataclass(frozen=True)
class Names:
    requests: str
    results: str
    dead: str
    group: str

    @classmethod
    def fresh(cls, bootstrap: str) -> Names:
        tag = uuid.uuid4().hex[:8]
        names = cls(f"async-requests-{tag}", f"async-results-{tag}", f"async-dead-letters-{tag}", f"gw-{tag}")
        cls.recreate(bootstrap, names)
        return names

    @staticmethod
    def recreate(bootstrap: str, names: Names) -> None:
        create_topics(bootstrap, [names.requests, names.results, names.dead])


def gateway_settings(bootstrap: str, redis_url: str, upstream: str, names: Names, **overrides: Any) -> dict[str, Any]:
    """Settings fields of a durable-async gateway with fast dev timings (short leases and horizons)."""
    fields: dict[str, Any] = {
        "port": 0,
        "grace_s": 0.2,
        "features_target": upstream,
        "inference_target": upstream,
        "api_keys": KEYS,
        "callback_hosts": ["127.0.0.1"],  # the fake callback server is on loopback: allowed explicitly
        "async_kafka_bootstrap": bootstrap,
        "async_redis_url": redis_url,
        "async_requests_topic": names.requests,
        "async_results_topic": names.results,
        "async_dead_letter_topic": names.dead,
        "async_consumer_group": names.group,
        "async_kafka_extra": DEV_CONSUMER_TIMEOUTS,
        "async_claim_lease_ms": 1500.0,
        "callback_backoff_base_ms": 20.0,
        "callback_timeout_ms": 300.0,
        "callback_lease_ms": 2000.0,
        "callback_poll_ms": 10.0,
    }
    fields.update(overrides)
    return fields


def settings(fields: dict[str, Any]) -> GatewaySettings:
    return GatewaySettings(**fields)


def environment(fields: dict[str, Any]) -> dict[str, str]:
    """The same settings as PREDMESH_GATEWAY_* variables (a gateway subprocess)."""
    return {
        "PREDMESH_GATEWAY_" + k.upper(): json.dumps(v) if isinstance(v, dict | list) else str(v)
        for k, v in fields.items()
    }


class HoldingUpstreams(Upstreams):
    """Upstreams whose Infer waits while `hold` is clear (to kill a gateway mid-flight); with `passes`
    = N, the next N Infer calls go through even then."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = asyncio.Event()
        self.hold.set()
        self.infer_started = asyncio.Event()
        self.passes = 0
        self.calls = 0  # Infer calls received

    async def Infer(
        self, request: inference_pb2.InferRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.InferResponse:
        self.infer_started.set()
        self.calls += 1
        if self.passes > 0:
            self.passes -= 1
        else:
            await self.hold.wait()
        return await super().Infer(request, context)


async def serving(address: str, timeout_s: float = 20.0) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout_s)


def read_topic(bootstrap: str, topic: str, count: int, timeout_s: float = 20.0) -> list[tuple[bytes, bytes, dict]]:
    """(key, value, headers) of the first `count` records of `topic` (fewer at the timeout)."""
    consumer = Consumer(
        {
            **DEV_CONSUMER_CONFIG,
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    out: list[tuple[bytes, bytes, dict]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            raw = msg.headers() or []
            headers = dict(raw.items() if isinstance(raw, dict) else raw)
            out.append((msg.key() or b"", msg.value() or b"", headers))
    finally:
        consumer.close()
    return out


async def until(predicate: Any, timeout_s: float = 20.0, step_s: float = 0.05) -> None:
    """Wait until `predicate()` (sync or async) is true; TimeoutError naming it otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(step_s)


async def started(upstreams: Upstreams) -> AsyncIterator[Upstreams]:
    await upstreams.start()
    try:
        yield upstreams
    finally:
        await upstreams.stop()
