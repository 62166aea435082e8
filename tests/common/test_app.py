"""ServiceApp: ordered start, cleanup after a failed start, ordered stop, restart, signals."""

from __future__ import annotations

import asyncio
import os
import signal
from contextlib import AsyncExitStack

import pytest

from predmesh.common.app import ServiceApp
from predmesh.common.runner import serve_until_signal
from predmesh.common.settings import ServerSettings


class Steps(ServiceApp[ServerSettings]):
    """Opens resources a, b, c (c fails when asked); records opens and closes."""

    name = "steps"

    def __init__(self, fail_at: str = "", fail_close: str = "") -> None:
        super().__init__(ServerSettings(port=0, grace_s=0.1))
        self.fail_at = fail_at
        self.fail_close = fail_close
        self.events: list[str] = []

    async def open(self, stack: AsyncExitStack) -> None:
        for name in ("a", "b", "c"):
            if name == self.fail_at:
                raise RuntimeError(f"cannot open {name}")
            self.events.append(f"open {name}")
            stack.push_async_callback(self._close, name)

    async def _close(self, name: str) -> None:
        self.events.append(f"close {name}")
        if name == self.fail_close:
            raise OSError(f"cannot close {name}")


async def test_a_start_that_fails_midway_closes_what_it_opened_in_reverse() -> None:
    app = Steps(fail_at="c")
    with pytest.raises(RuntimeError, match="cannot open c"):
        await app.start()
    assert app.events == ["open a", "open b", "close b", "close a"]
    assert not app.started
    await app.stop()  # nothing left to close
    assert app.events[-1] == "close a"


async def test_stop_closes_in_reverse_order_and_is_idempotent() -> None:
    app = Steps()
    await app.start()
    assert app.started
    await app.stop()
    await app.stop()
    assert app.events == ["open a", "open b", "open c", "close c", "close b", "close a"]


async def test_a_closer_that_raises_does_not_keep_the_others_from_running() -> None:
    app = Steps(fail_close="b")
    await app.start()
    with pytest.raises(OSError, match="cannot close b"):
        await app.stop()
    assert app.events[-3:] == ["close c", "close b", "close a"]


async def test_start_twice_is_refused_and_restart_after_stop_works() -> None:
    app = Steps()
    await app.start()
    with pytest.raises(RuntimeError, match="already started"):
        await app.start()
    await app.stop()
    await app.start()
    await app.stop()
    assert app.events.count("open a") == 2 and app.events.count("close a") == 2


async def test_addresses_need_a_started_server() -> None:
    app = Steps()
    with pytest.raises(RuntimeError, match="not started"):
        _ = app.port
    assert app.metrics_port == 0


async def test_sigterm_stops_the_app() -> None:
    app = Steps()
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
    try:
        await asyncio.wait_for(serve_until_signal(app), timeout=30)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    assert app.events[-3:] == ["close c", "close b", "close a"]
    assert not app.started
