"""A start that fails midway: what every service app must clean up (tasks, threads, channels)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import grpc
import pytest

from predmesh.common.app import ServiceApp
from predmesh.common.grpcserver import GrpcServer

FAILURE = "cannot bind: test"


def _own_threads() -> set[threading.Thread]:
    # Not the app's: asyncio.to_thread's executor threads (the loop owns them) and grpc.aio's
    # process-wide completion-queue poller (grpc starts and retires it on its own).
    return {
        t
        for t in threading.enumerate()
        if t.is_alive() and not t.name.startswith("asyncio_") and "_poll_wrapper" not in t.name
    }


def refuse_to_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the gRPC server's start (the last step of every app's start) fail."""

    async def refuse(self: GrpcServer) -> int:
        raise RuntimeError(FAILURE)

    monkeypatch.setattr(GrpcServer, "start", refuse)


def record_channels(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[grpc.aio.Channel]:
    """Record the channels `module.channel` (mTLS-capable) or `module.insecure_channel` opens."""
    opened: list[grpc.aio.Channel] = []
    name = "channel" if hasattr(module, "channel") else "insecure_channel"
    real = getattr(module, name)

    def recording(*args: Any, **kwargs: Any) -> grpc.aio.Channel:
        channel = real(*args, **kwargs)
        opened.append(channel)
        return channel

    monkeypatch.setattr(module, name, recording)
    return opened


async def assert_channel_closed(channel: grpc.aio.Channel) -> None:
    assert channel.get_state() == grpc.ChannelConnectivity.SHUTDOWN


async def assert_failed_start_leaks_nothing(app: ServiceApp[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Start `app` with a server that cannot bind: it raises, and every task and thread it started is gone."""
    refuse_to_serve(monkeypatch)
    tasks_before = asyncio.all_tasks()
    threads_before = _own_threads()
    with pytest.raises(RuntimeError, match=FAILURE):
        await app.start()
    # Cancelled calls finish on later loop iterations (grpc's own status tasks); a leaked task
    # (a sender loop, a watcher) never does, so waiting for completion is a bound, not a timing.
    pending = asyncio.all_tasks() - tasks_before
    if pending:
        await asyncio.wait(pending, timeout=5)
    leaked_tasks = [t for t in pending if not t.done()]
    assert leaked_tasks == [], f"tasks left running: {leaked_tasks}"
    for thread in _own_threads() - threads_before:  # a stopped thread may still be returning
        await asyncio.to_thread(thread.join, 10)
    names = sorted(t.name for t in _own_threads() - threads_before)
    assert names == [], f"threads left running: {names}"
    assert not app.started
    with pytest.raises(RuntimeError, match="not started"):
        _ = app.address
