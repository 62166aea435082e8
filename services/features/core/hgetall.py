"""HGETALL of many keys in one round trip on one pooled redis.asyncio connection.

What `pipeline(transaction=False)` + `execute()` does for a read of entity hashes, without
the pipeline layer: redis-py packs each queued command in Python, records operation
metrics and parses each reply through the command's callbacks, which cost the features
service more CPU per coalesced read than reading the replies (docs/BENCHMARKS.md,
"Features tier per-call cost"). Here the commands
are written as one RESP buffer (`pack_hgetall`) and the replies read in order with the
connection's own `read_response` (socket timeout, disconnect on a connection error or on
cancellation, as before).

Same behaviour as the pipeline it replaces: the connection comes from the client's pool
(its wait bounded by the pool's timeout); a connection error or timeout disconnects and
re-sends the whole batch under the connection's `Retry` (`redis_retries`); an error reply
(e.g. WRONGTYPE) is raised only after every reply was read, so the pooled connection never
desynchronises. Replies come back as dicts of bytes (RESP2 flat lists or RESP3 maps).

Stateless functions; use from the event loop that owns the client.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

_HGETALL = b"*2\r\n$7\r\nHGETALL\r\n$"


def pack_hgetall(keys: Sequence[str]) -> bytes:
    """One RESP buffer holding `HGETALL key` for every key (UTF-8 keys, like redis-py's encoder)."""
    parts = []
    for key in keys:
        raw = key.encode()
        parts.append(b"%s%d\r\n%s\r\n" % (_HGETALL, len(raw), raw))
    return b"".join(parts)


async def hgetall_many(client: aioredis.Redis, keys: Sequence[str]) -> list[dict[bytes, bytes]]:
    """The hash of every key (empty dict: no such key), aligned with `keys`, in one round trip."""
    if not keys:
        return []
    packed = pack_hgetall(keys)
    pool = client.connection_pool
    conn = await pool.get_connection()
    try:
        replies: list[Any] = await conn.retry.call_with_retry(
            lambda: _round_trip(conn, packed, len(keys)), lambda _error: conn.disconnect()
        )
    finally:
        await pool.release(conn)
    return [_as_dict(reply) for reply in replies]


async def _round_trip(conn: Any, packed: bytes, count: int) -> list[Any]:
    complete = False
    try:
        await conn.send_packed_command(packed)
        replies: list[Any] = []
        first_error: ResponseError | None = None
        for _ in range(count):
            try:
                replies.append(await conn.read_response())
            except ResponseError as err:  # an error reply: keep reading the others
                first_error = first_error or err
                replies.append(None)
        complete = True
    finally:
        if not complete:  # replies may be left on the socket: never hand this connection out again
            await conn.disconnect(nowait=True)
    if first_error is not None:
        raise first_error
    return replies


def _as_dict(reply: Any) -> dict[bytes, bytes]:
    if isinstance(reply, dict):
        return reply
    if not reply:
        return {}
    it = iter(reply)
    return dict(zip(it, it, strict=True))
