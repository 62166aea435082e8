"""Redis implementation of the durable async ResultStore (shared by every gateway replica): one Redis
or a Redis Cluster.

Keys (prefix `predmesh:async:`; on a cluster `{predmesh:async}:`), each with the result TTL unless noted:
- `r:{id}`   hash: state (pending/done/failed), owner (API key name), result (CallbackDelivery bytes);
- `c:{id}`   the scorer's claim: SET NX PX <lease> (exactly one scorer per lease);
- `cb:{id}`  hash: the pinned callback target, attempts, first attempt time (ms);
- `due`      sorted set id -> next attempt time (ms), no TTL (entries end with their delivery);
- `pending`  sorted set id -> acceptance time (ms), no TTL: accepted and not yet answered.
A result and its callback schedule are written in one MULTI (never one without the other);
`claim_due` is one Lua script (each due callback goes to one sender per lease). Both span the
request's keys and the shared sorted sets, so on a cluster (a `redis+cluster://` URL,
predmesh.featurestore.redis_client) every key carries the hash tag `{predmesh:async}`: all of them
live in one slot, on one master (and its replicas), where MULTI and the script stay atomic and
failover is the cluster's. Async results then scale with that one master, not with the cluster.
Redis errors become Unavailable (a failed TLS handshake too: a rediss:// URL verifies the server
against the `tls` files, predmesh.common.redistls). Owns one redis.asyncio client (`close()` at stop).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from predmesh.common.redistls import RedisTls
from predmesh.featurestore.redis_client import aclose, async_client, parse_target
from services.gateway.core.async_ports import AsyncJob, AsyncResult, DueCallback, Lookup, State
from services.gateway.transport.async_codec import decode_result, encode_result, target_from_text, target_to_text
from services.gateway.transport.redis_call import redis_call

T = TypeVar("T")


def _call(op: Callable[[], Awaitable[T]]) -> Awaitable[T]:
    return redis_call("async result store", op)


PREFIX = "predmesh:async:"
CLUSTER_PREFIX = "{predmesh:async}:"  # the hash tag puts every key in one slot (module docstring)
_CLAIM_DUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], 'XX', ARGV[2], id) end
return ids
"""


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)


class RedisResultStore:
    def __init__(self, url: str, timeout_s: float = 1.0, tls: RedisTls | None = None) -> None:
        target = parse_target(url)
        self._redis: Any = async_client(target, timeout_s, max_connections=32, retries=1, tls=tls)
        self.prefix = CLUSTER_PREFIX if target.cluster else PREFIX
        self._claim_due = self._redis.register_script(_CLAIM_DUE)
        self._due = self.prefix + "due"
        self._pending = self.prefix + "pending"

    async def close(self) -> None:
        await aclose(self._redis)

    async def mark_pending(self, job: AsyncJob, ttl_s: float) -> None:
        key = self.prefix + "r:" + job.item.request_id

        async def op() -> Any:
            pipe = self._redis.pipeline(transaction=True)
            pipe.hsetnx(key, "state", State.PENDING.value)
            pipe.hsetnx(key, "owner", job.owner)
            pipe.pexpire(key, _ms(ttl_s), nx=True)
            created = (await pipe.execute())[0]
            if created:  # a known request (a duplicate, maybe answered already) is not pending again
                await self._redis.zadd(self._pending, {job.item.request_id: job.accepted_ms}, nx=True)

        await _call(op)

    async def lookup(self, request_id: str) -> Lookup | None:
        raw: dict[Any, Any] = await _call(lambda: self._redis.hgetall(self.prefix + "r:" + request_id))
        if not raw or b"state" not in raw:
            return None
        result = decode_result(raw[b"result"]) if b"result" in raw else None
        return Lookup(state=State(raw[b"state"].decode()), owner=raw.get(b"owner", b"").decode(), result=result)

    async def claim(self, request_id: str, token: str, lease_s: float) -> bool:
        key = self.prefix + "c:" + request_id
        got = await _call(lambda: self._redis.set(key, token, nx=True, px=max(int(lease_s * 1000), 1)))
        return bool(got)

    async def store_result(self, job: AsyncJob, result: AsyncResult, ttl_s: float, first_due_ms: int) -> None:
        request_id = job.item.request_id
        key = self.prefix + "r:" + request_id

        async def op() -> Any:
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(key, mapping={"state": result.state.value, "owner": job.owner, "result": encode_result(result)})
            pipe.pexpire(key, _ms(ttl_s))
            if job.target is not None:
                cb = self.prefix + "cb:" + request_id
                pipe.hset(cb, mapping={"target": target_to_text(job.target), "attempts": 0, "first_ms": first_due_ms})
                pipe.pexpire(cb, _ms(ttl_s))
                pipe.zadd(self._due, {request_id: first_due_ms}, nx=True)
                pipe.zadd(self._pending, {request_id: job.accepted_ms or first_due_ms}, nx=True)
            else:
                pipe.zrem(self._pending, request_id)  # answered: it can be polled now
            return await pipe.execute()

        await _call(op)

    async def claim_due(self, now_ms: int, lease_ms: int, limit: int) -> list[DueCallback]:
        ids: list[bytes] = await _call(
            lambda: self._claim_due(keys=[self._due], args=[now_ms, now_ms + lease_ms, limit])  # type: ignore[arg-type]
        )
        if not ids:
            return []

        async def load() -> Any:
            pipe = self._redis.pipeline(transaction=False)
            for raw_id in ids:
                pipe.hgetall(self.prefix + "cb:" + raw_id.decode())
                pipe.hget(self.prefix + "r:" + raw_id.decode(), "result")
            return await pipe.execute()

        loaded = await _call(load)
        out: list[DueCallback] = []
        for i, raw_id in enumerate(ids):
            cb, result = loaded[2 * i], loaded[2 * i + 1]
            if not cb or result is None:  # expired with the result TTL: nothing left to deliver
                await self.finish_callback(raw_id.decode())
                continue
            out.append(
                DueCallback(
                    result=decode_result(result),
                    target=target_from_text(cb[b"target"].decode()),
                    attempts=int(cb.get(b"attempts", b"0")),
                    first_ms=int(cb.get(b"first_ms", b"0")),
                )
            )
        return out

    async def reschedule(self, request_id: str, due_ms: int, attempts: int) -> None:
        async def op() -> Any:
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(self.prefix + "cb:" + request_id, "attempts", attempts)
            pipe.zadd(self._due, {request_id: due_ms}, xx=True)
            return await pipe.execute()

        await _call(op)

    async def finish_callback(self, request_id: str) -> None:
        async def op() -> Any:
            pipe = self._redis.pipeline(transaction=True)
            pipe.zrem(self._due, request_id)
            pipe.delete(self.prefix + "cb:" + request_id)
            pipe.zrem(self._pending, request_id)
            return await pipe.execute()

        await _call(op)

    async def pending_stats(self) -> tuple[int, int | None]:
        async def op() -> Any:
            pipe = self._redis.pipeline(transaction=False)
            pipe.zcard(self._pending)
            pipe.zrange(self._pending, 0, 0, withscores=True)
            return await pipe.execute()

        count, oldest = await _call(op)
        return int(count), (int(oldest[0][1]) if oldest else None)
