"""PredictAsync dispatcher: delivery, retries (no pause after the last try), bounds, target checks."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from predmesh.common.callback_policy import CallbackPolicy
from predmesh.common.errors import ErrorCode
from services.gateway.core.async_jobs import AsyncDispatcher
from services.gateway.errors import InvalidArgument, PermissionDenied, ResourceExhausted
from tests.gateway.fakes import RecordingCallbacks
from tests.gateway.test_predictor import item, make

HOSTS = ("hooks.example.com",)


async def public_resolver(host: str, port: int) -> list[str]:
    return ["93.184.216.34"]  # a public address (documentation-free range is fine for the check)


def policy() -> CallbackPolicy:
    return CallbackPolicy(resolver=public_resolver)


async def test_delivers_results_and_errors() -> None:
    predictor, _ = make()
    callbacks = RecordingCallbacks()
    dispatcher = AsyncDispatcher(predictor, callbacks, 10, 1.0, 3, 0.5, policy=policy())
    rid = await dispatcher.submit(replace(item(), request_id=""), "hooks.example.com:8443", HOSTS)
    rid_bad = await dispatcher.submit(replace(item(model="nope"), request_id="bad-1"), "hooks.example.com:8443", HOSTS)
    assert rid and rid != rid_bad == "bad-1"
    await dispatcher.drain(2.0)
    delivered = {d[1]: d for d in callbacks.deliveries}
    result = delivered[rid][2]
    assert result is not None and result.score.score == pytest.approx(0.25)
    err = delivered[rid_bad][3]
    assert err is not None and err.code is ErrorCode.NOT_FOUND
    target = delivered[rid][0]
    assert target.address == "93.184.216.34" and target.host == "hooks.example.com"  # type: ignore[attr-defined]


async def test_retries_then_counts_failures() -> None:
    predictor, _ = make()
    callbacks = RecordingCallbacks(failures=2)
    dispatcher = AsyncDispatcher(predictor, callbacks, 10, 1.0, 3, 0.5, policy=policy())
    await dispatcher.submit(item(), "hooks.example.com:8443", HOSTS)
    await dispatcher.drain(5.0)
    assert len(callbacks.deliveries) == 1 and dispatcher.failed_deliveries == 0

    failing = RecordingCallbacks(failures=10)
    dispatcher2 = AsyncDispatcher(predictor, failing, 10, 1.0, 2, 0.5, policy=policy())
    await dispatcher2.submit(item(), "hooks.example.com:8443", HOSTS)
    await dispatcher2.drain(5.0)
    assert failing.deliveries == [] and dispatcher2.failed_deliveries == 1


async def test_no_pause_after_the_last_failed_attempt() -> None:
    predictor, _ = make()
    pauses: list[float] = []

    async def record_sleep(seconds: float) -> None:
        pauses.append(seconds)

    failing = RecordingCallbacks(failures=10)
    dispatcher = AsyncDispatcher(predictor, failing, 10, 1.0, 3, 0.5, policy=policy(), sleep=record_sleep)
    await dispatcher.submit(item(), "hooks.example.com:8443", HOSTS)
    await dispatcher.drain(5.0)
    assert dispatcher.failed_deliveries == 1
    assert len(pauses) == 2  # between the 3 attempts, none after the last


async def test_bounds_and_validates() -> None:
    predictor, _ = make()

    class Slow(RecordingCallbacks):
        async def deliver(self, *args: object, **kwargs: object) -> None:
            await asyncio.sleep(10)

    dispatcher = AsyncDispatcher(predictor, Slow(), 1, 1.0, 1, 0.5, policy=policy())
    with pytest.raises(InvalidArgument):
        await dispatcher.submit(item(), "no-port", HOSTS)
    with pytest.raises(PermissionDenied):
        await dispatcher.submit(item(), "elsewhere.example.org:8443", HOSTS)
    await dispatcher.submit(item(), "hooks.example.com:8443", HOSTS)
    with pytest.raises(ResourceExhausted):
        await dispatcher.submit(item(), "hooks.example.com:8443", HOSTS)
    await dispatcher.drain(0.05)
    assert dispatcher.pending == 0
