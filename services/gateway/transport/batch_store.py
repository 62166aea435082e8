"""Redis implementation of the batch JobStore (shared by every gateway replica): one Redis or a Redis Cluster.

Keys (prefix `predmesh:batch:`; `{id}` is a hash tag, so one job's keys share a cluster slot):
- `{id}:j`       hash: spec (JSON), state, rows_done, rows_failed, chunks_done, started_ms, finished_ms,
                 error; expires `job_ttl` after submission and again after it finishes;
- `{id}:d`       set of checkpointed chunk numbers (same expiry);
- `{id}:l:{n}`   lease of chunk n (`{id}:l:final`: the final join): SET NX PX <lease>, value = worker id;
- `active`       set of job ids not finished (workers scan it): a hint, kept outside the job's slot.
Leasing, renewing, checkpointing and finishing are each one Lua script on the job's slot, so two
replicas never hold one lease and a chunk's counters move once. `active` is updated next to them:
a job is added after it is stored (again on a retried submit of an unfinished job) and removed
after it finishes; a member whose job is finished or gone is removed by the next lease attempt,
so a replica dying between the two steps leaves nothing stuck. A `redis+cluster://` URL
(predmesh.featurestore.redis_client) selects the cluster client; a rediss URL verifies the server
against the `tls` files (predmesh.common.redistls). Redis errors (a failed TLS handshake too)
become Unavailable.
Owns one client.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from predmesh.common.redistls import RedisTls
from predmesh.featurestore.redis_client import aclose, async_client, parse_target
from services.gateway.core.batch_ports import JobSpec, JobState, JobStatus, Lease
from services.gateway.errors import Unavailable
from services.gateway.transport.redis_call import redis_call

T = TypeVar("T")


def _call(op: Callable[[], Awaitable[T]]) -> Awaitable[T]:
    return redis_call("batch job store", op)


Arg = str | int | float
PREFIX = "predmesh:batch:"
GONE = -2  # lease script: the job is finished or expired (drop it from `active`)

# KEYS: job; ARGV: spec, chunks, ttl ms
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'spec', ARGV[1], 'state', 'queued', 'chunks_total', ARGV[2],
  'rows_done', 0, 'rows_failed', 0, 'chunks_done', 0, 'started_ms', 0, 'finished_ms', 0, 'error', '')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
# KEYS: job, done; ARGV: id, worker, lease ms, now ms, lease key prefix (same slot: the job's hash tag)
_LEASE = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'running' then return -2 end
local function take(key)
  if redis.call('SET', key, ARGV[2], 'NX', 'PX', ARGV[3]) then
    if state == 'queued' then redis.call('HSET', KEYS[1], 'state', 'running', 'started_ms', ARGV[4]) end
    return true
  end
  return false
end
local chunks = tonumber(redis.call('HGET', KEYS[1], 'chunks_total'))
if redis.call('SCARD', KEYS[2]) >= chunks then
  if take(ARGV[5] .. 'final') then return -1 end
  return false
end
for i = 0, chunks - 1 do
  if redis.call('SISMEMBER', KEYS[2], i) == 0 and take(ARGV[5] .. i) then return i end
end
return false
"""
# KEYS: lease; ARGV: worker, lease ms
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: job, done, lease; ARGV: chunk, worker, rows, failed, ttl ms
_CHECKPOINT = """
local added = redis.call('SADD', KEYS[2], ARGV[1])
if added == 1 then
  redis.call('HINCRBY', KEYS[1], 'rows_done', ARGV[3])
  redis.call('HINCRBY', KEYS[1], 'rows_failed', ARGV[4])
  redis.call('HINCRBY', KEYS[1], 'chunks_done', 1)
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
if redis.call('GET', KEYS[3]) == ARGV[2] then redis.call('DEL', KEYS[3]) end
return added
"""
# KEYS: job, done; ARGV: state, error, now ms, ttl ms
_FINISH = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'error', ARGV[2], 'finished_ms', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
"""


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)


def _spec_to_json(spec: JobSpec) -> str:
    return json.dumps({f: getattr(spec, f) for f in JobSpec.__slots__})


def _spec_from_json(text: str) -> JobSpec:
    return JobSpec(**json.loads(text))


class RedisJobStore:
    def __init__(
        self, url: str, timeout_s: float = 2.0, job_ttl_s: float = 7 * 86400.0, tls: RedisTls | None = None
    ) -> None:
        self._job_ttl_s = job_ttl_s  # the checkpoint set's expiry, renewed with every new chunk
        target = parse_target(url)
        self._redis: Any = async_client(target, timeout_s, max_connections=32, retries=1, tls=tls)
        self._create = self._redis.register_script(_CREATE)
        self._lease = self._redis.register_script(_LEASE)
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)
        self._checkpoint = self._redis.register_script(_CHECKPOINT)
        self._finish = self._redis.register_script(_FINISH)
        self._active = PREFIX + "active"

    async def close(self) -> None:
        await aclose(self._redis)

    @staticmethod
    def _job(job_id: str) -> str:
        return f"{PREFIX}{{{job_id}}}:j"

    @staticmethod
    def _done(job_id: str) -> str:
        return f"{PREFIX}{{{job_id}}}:d"

    @staticmethod
    def _lease_prefix(job_id: str) -> str:
        return f"{PREFIX}{{{job_id}}}:l:"

    def _lease_key(self, lease: Lease) -> str:
        return self._lease_prefix(lease.job_id) + ("final" if lease.chunk < 0 else str(lease.chunk))

    async def create(self, spec: JobSpec, ttl_s: float) -> JobStatus:
        keys = [self._job(spec.job_id)]
        args: list[Arg] = [_spec_to_json(spec), spec.chunks_total, _ms(ttl_s)]
        await _call(lambda: self._create(keys=keys, args=args))
        found = await self.get(spec.job_id)
        if found is None:  # expired between the two calls: only with a tiny TTL
            raise Unavailable("batch job vanished right after submission")
        if not found.state.terminal:  # new, or a retried submit of a job whose first one died right here
            await _call(lambda: self._redis.sadd(self._active, spec.job_id))
        return found

    async def get(self, job_id: str) -> JobStatus | None:
        raw: Any = await _call(lambda: self._redis.hgetall(self._job(job_id)))  # type: ignore[arg-type]
        if not raw or b"spec" not in raw:
            return None
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        return JobStatus(
            spec=_spec_from_json(fields["spec"]),
            state=JobState(fields.get("state", "queued")),
            rows_done=int(fields.get("rows_done", 0)),
            rows_failed=int(fields.get("rows_failed", 0)),
            chunks_done=int(fields.get("chunks_done", 0)),
            started_ms=int(fields.get("started_ms", 0)),
            finished_ms=int(fields.get("finished_ms", 0)),
            error=fields.get("error", ""),
        )

    async def active(self) -> list[str]:
        members: Any = await _call(lambda: self._redis.smembers(self._active))  # type: ignore[arg-type,return-value]
        return sorted(m.decode() for m in members)

    async def finish(self, job_id: str, state: JobState, error: str, now_ms: int, ttl_s: float) -> bool:
        keys = [self._job(job_id), self._done(job_id)]
        args: list[Arg] = [state.value, error, now_ms, _ms(ttl_s)]
        finished = bool(await _call(lambda: self._finish(keys=keys, args=args)))
        await _call(lambda: self._redis.srem(self._active, job_id))
        return finished

    async def lease(self, job_id: str, worker: str, lease_s: float, now_ms: int) -> Lease | None:
        keys = [self._job(job_id), self._done(job_id)]
        args: list[Arg] = [job_id, worker, _ms(lease_s), now_ms, self._lease_prefix(job_id)]
        chunk = await _call(lambda: self._lease(keys=keys, args=args))
        if chunk is None:
            return None
        if int(chunk) == GONE:
            await _call(lambda: self._redis.srem(self._active, job_id))
            return None
        return Lease(job_id, int(chunk))

    async def renew(self, lease: Lease, worker: str, lease_s: float) -> bool:
        keys = [self._lease_key(lease)]
        return bool(await _call(lambda: self._renew(keys=keys, args=[worker, _ms(lease_s)])))

    async def checkpoint(self, lease: Lease, worker: str, rows: int, failed: int) -> bool:
        keys = [self._job(lease.job_id), self._done(lease.job_id), self._lease_key(lease)]
        args: list[Arg] = [lease.chunk, worker, rows, failed, _ms(self._job_ttl_s)]
        return bool(await _call(lambda: self._checkpoint(keys=keys, args=args)))

    async def release(self, lease: Lease, worker: str) -> None:
        keys = [self._lease_key(lease)]
        await _call(lambda: self._release(keys=keys, args=[worker]))
