"""One Redis call of a gateway store (async results, batch jobs): a Redis failure becomes
`Unavailable` naming the store, never a raw client exception (or its address) to the caller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import RedisError

from predmesh.common.errors import Unavailable

T = TypeVar("T")


async def redis_call(store: str, op: Callable[[], Awaitable[T]]) -> T:
    try:
        return await op()
    except RedisError as err:
        raise Unavailable(f"{store} unavailable: {type(err).__name__}") from err
