"""Fixtures shared by the async, batch and lane tests: the fake upstreams (features, inference and
the callback target in one server), released at teardown so no held call outlives its test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.gateway.asyncq.support import HoldingUpstreams


@pytest.fixture
async def upstreams() -> AsyncIterator[HoldingUpstreams]:
    fakes = HoldingUpstreams()
    await fakes.start()
    yield fakes
    fakes.hold.set()
    await fakes.stop()
