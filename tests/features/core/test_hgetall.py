"""hgetall_many against a real redis-server: replies in order, error replies, connection reuse."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from services.features.core.hgetall import hgetall_many, pack_hgetall


def test_pack_hgetall_is_what_redis_py_packs() -> None:
    from redis.asyncio.connection import Connection

    keys = ["features:user:u1", "features:user:ü-ünïcode", "k" * 300]
    expected = b"".join(b"".join(Connection().pack_command("HGETALL", key)) for key in keys)
    assert pack_hgetall(keys) == expected


@pytest.mark.parametrize("protocol", [2, 3])
async def test_replies_in_key_order_missing_keys_empty(redis_url: str, protocol: int) -> None:
    client = aioredis.Redis.from_url(redis_url, protocol=protocol)
    try:
        await client.hset("features:user:a", mapping={"x": "1", "y": "2"})
        await client.hset("features:user:b", mapping={"x": "3"})
        got = await hgetall_many(client, ["features:user:b", "features:user:none", "features:user:a"])
    finally:
        await client.aclose()
    assert got == [{b"x": b"3"}, {}, {b"x": b"1", b"y": b"2"}]


async def test_an_error_reply_is_raised_after_every_reply_was_read(redis_url: str) -> None:
    # One pooled connection: the next read must get its own replies, not the leftovers of this one.
    client = aioredis.Redis.from_url(redis_url, max_connections=1)
    try:
        await client.set("features:user:str", "not a hash")
        await client.hset("features:user:a", mapping={"x": "1"})
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await hgetall_many(client, ["features:user:a", "features:user:str", "features:user:a"])
        assert await hgetall_many(client, ["features:user:a"]) == [{b"x": b"1"}]
        assert await client.ping()
    finally:
        await client.aclose()


async def test_a_dropped_connection_is_retried_with_the_pools_retry_policy(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, max_connections=1, retry=Retry(NoBackoff(), 1))
    try:
        await client.hset("features:user:a", mapping={"x": "1"})
        assert await hgetall_many(client, ["features:user:a"]) == [{b"x": b"1"}]
        await client.client_kill_filter(skipme=False, _type="normal")  # drop every client connection
        assert await hgetall_many(client, ["features:user:a"]) == [{b"x": b"1"}]
    finally:
        await client.aclose()


async def test_no_keys_no_round_trip() -> None:
    client = aioredis.Redis.from_url("redis://127.0.0.1:1/0")  # nothing listens: any I/O would fail
    try:
        assert await hgetall_many(client, []) == []
    finally:
        await client.aclose()
