"""The breaker registry reports state changes to its listener, not every call."""

from __future__ import annotations

from services.gateway.core.breaker import BreakerRegistry, CircuitOpen
from services.gateway.errors import Unavailable


async def ok() -> int:
    return 1


async def down() -> int:
    raise Unavailable("down")


async def test_on_state_hears_each_key_first_state_and_changes_only() -> None:
    heard: list[tuple[str, bool]] = []
    breakers = BreakerRegistry(failure_threshold=2, reset_timeout_s=60.0, on_state=lambda k, o: heard.append((k, o)))
    for _ in range(5):
        assert await breakers.call("features", ok) == 1
    assert heard == [("features", False)]
    for _ in range(2):
        try:
            await breakers.call("features", down)
        except Unavailable:
            pass
    try:
        await breakers.call("features", ok)
    except CircuitOpen:
        pass
    assert heard == [("features", False), ("features", True)]  # opened once, reported once
    await breakers.call("model:fraud:1", ok)
    assert heard[-1] == ("model:fraud:1", False)
