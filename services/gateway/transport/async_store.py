"""Redis implementation of the durable async ResultStore (shared by every gateway replica): one Redis
or a Redis Cluster.

Keys (prefix `predmesh:async:`; on a cluster `{predmesh:async}:`), each with the result TTL unless noted:
- `r:{id}`   hash: state (pending/done/failed), owner (API key name), result (CallbackDelivery bytes);
- `c:{id}`   the scorer's claim: SET NX PX <lease> (exactly one scorer per lease);
- `cb:{id}`  hash: the pinned callback target, attempts, first attempt time (ms);
- `due`      sorted set id -> next attempt time (ms), no TTL (entries end with their delivery);
- `pending`  sorted set id -> acceptance time (ms), no TTL: accepted and not yet answered.
Every write that spans keys is one Lua script, atomic: a result and its callback schedule are
written together (never one without the other), and `claim_due` gives each due callback to one
sender per lease. The scripts span the request's keys and the shared sorted sets, so on a cluster
(a `redis+cluster://` URL, predmesh.featurestore.redis_client) every key carries the hash tag
`{predmesh:async}`: all of them live in one slot, on one master (and its replicas), where the
scripts stay atomic and failover is the cluster's. Async results then scale with that one master,
not with the cluster. (Scripts, not MULTI: redis-py 8.1's asyncio cluster runs a transaction
pipeline's commands on a thread of their own and blocks the event loop on it; a CI run hung there.)
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
# KEYS: r:{id}, pending; ARGV: state, owner, ttl ms, request id, accepted ms. 1 when created.
_MARK_PENDING = """
local created = redis.call('HSETNX', KEYS[1], 'state', ARGV[1])
redis.call('HSETNX', KEYS[1], 'owner', ARGV[2])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
if created == 1 then redis.call('ZADD', KEYS[2], 'NX', ARGV[5], ARGV[4]) end
return created
"""
# KEYS: r:{id}, cb:{id}, due, pending; ARGV: state, owner, result, ttl ms, request id, with callback (1/0),
# target, first due ms, accepted ms
_STORE_RESULT = """
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'owner', ARGV[2], 'result', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if ARGV[6] == '1' then
  redis.call('HSET', KEYS[2], 'target', ARGV[7], 'attempts', 0, 'first_ms', ARGV[8])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  redis.call('ZADD', KEYS[3], 'NX', ARGV[8], ARGV[5])
  redis.call('ZADD', KEYS[4], 'NX', ARGV[9], ARGV[5])
else
  redis.call('ZREM', KEYS[4], ARGV[5])
end
return 1
"""
# KEYS: cb:{id}, due; ARGV: attempts, due ms, request id
_RESCHEDULE = """
redis.call('HSET', KEYS[1], 'attempts', ARGV[1])
redis.call('ZADD', KEYS[2], 'XX', ARGV[2], ARGV[3])
return 1
"""
# KEYS: due, cb:{id}, pending; ARGV: request id
_FINISH_CALLBACK = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""
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
        self._mark_pending = self._redis.register_script(_MARK_PENDING)
        self._store_result = self._redis.register_script(_STORE_RESULT)
        self._reschedule = self._redis.register_script(_RESCHEDULE)
        self._finish_callback = self._redis.register_script(_FINISH_CALLBACK)
        self._due = self.prefix + "due"
        self._pending = self.prefix + "pending"

    async def close(self) -> None:
        await aclose(self._redis)

    async def mark_pending(self, job: AsyncJob, ttl_s: float) -> None:
        """Pending once: a known request (a duplicate, maybe answered already) is not pending again."""
        request_id = job.item.request_id
        keys = [self.prefix + "r:" + request_id, self._pending]
        args: list[Any] = [State.PENDING.value, job.owner, _ms(ttl_s), request_id, job.accepted_ms]
        await _call(lambda: self._mark_pending(keys=keys, args=args))

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
        p = self.prefix
        keys = [p + "r:" + request_id, p + "cb:" + request_id, self._due, self._pending]
        target = "" if job.target is None else target_to_text(job.target)
        args: list[Any] = [
            result.state.value,
            job.owner,
            encode_result(result),
            _ms(ttl_s),
            request_id,
            "0" if job.target is None else "1",
            target,
            first_due_ms,
            job.accepted_ms or first_due_ms,
        ]
        await _call(lambda: self._store_result(keys=keys, args=args))

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
        keys = [self.prefix + "cb:" + request_id, self._due]
        await _call(lambda: self._reschedule(keys=keys, args=[attempts, due_ms, request_id]))

    async def finish_callback(self, request_id: str) -> None:
        keys = [self._due, self.prefix + "cb:" + request_id, self._pending]
        await _call(lambda: self._finish_callback(keys=keys, args=[request_id]))

    async def pending_stats(self) -> tuple[int, int | None]:
        async def op() -> Any:
            pipe = self._redis.pipeline(transaction=False)
            pipe.zcard(self._pending)
            pipe.zrange(self._pending, 0, 0, withscores=True)
            return await pipe.execute()

        count, oldest = await _call(op)
        return int(count), (int(oldest[0][1]) if oldest else None)
