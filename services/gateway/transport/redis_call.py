"""One Redis call of a gateway store (async results, batch jobs): a Redis failure becomes
`Unavailable` naming the store, never a raw client exception (or its address) to the caller.
A Redis Cluster client that cannot load its slot map (no seed reachable, a TLS handshake
refused) raises RedisClusterException, which is not a RedisError: Unavailable as well."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import RedisClusterException, RedisError

from predmesh.common.errors import Unavailable

T = TypeVar("T")


async def redis_call(store: str, op: Callable[[], Awaitable[T]]) -> T:
    try:
        return await op()
    except (RedisError, RedisClusterException) as err:
        raise Unavailable(f"{store} unavailable: {type(err).__name__}") from err
