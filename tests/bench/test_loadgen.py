"""The load generator schedules what it claims and measures latency from the intended send time.

A tiny grpc.aio server (raw bytes, no protos) on a free loopback port records when each
request arrived; one variant holds every request behind a single 400 ms stall. The
assertions use wide margins (counts are exact, times only have lower bounds or generous
upper bounds), so a busy machine makes the test slower, not flaky.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np
import pytest

from bench import loadgen

METHOD = "/bench.test.Echo/Call"
STALL_S = 0.4


class _Server:
    def __init__(self, stall_on: int | None = None) -> None:
        self.arrivals: list[float] = []
        self.stall_on = stall_on  # 1-based request number that stalls everyone behind it
        self._lock = asyncio.Lock()
        self.server = grpc.aio.server()
        handler = grpc.unary_unary_rpc_method_handler(self._call)
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("bench.test.Echo", {"Call": handler}),)
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    async def _call(self, request: bytes, context: Any) -> bytes:
        self.arrivals.append(time.monotonic())
        async with self._lock:  # a stall holds everyone, like a GC pause or a full queue
            if self.stall_on is not None and len(self.arrivals) == self.stall_on:
                await asyncio.sleep(STALL_S)
        return request


class _EchoTarget:
    def __init__(self, address: str) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = self.channel.unary_unary(METHOD)

    async def call(self) -> str:
        try:
            await self.stub(b"x", timeout=5)
        except grpc.aio.AioRpcError as err:
            return err.code().name
        return loadgen.OK

    async def close(self) -> None:
        await self.channel.close()


async def make_target(address: str) -> _EchoTarget:
    """Target factory named by TargetSpec (importable, so child processes can build it)."""
    return _EchoTarget(address)


async def _serve(stall_on: int | None = None) -> _Server:
    server = _Server(stall_on)
    await server.server.start()
    return server


@pytest.fixture
async def echo() -> AsyncIterator[_Server]:
    server = await _serve()
    yield server
    await server.server.stop(None)


@pytest.fixture
async def stalled() -> AsyncIterator[_Server]:
    server = await _serve(stall_on=20)
    yield server
    await server.server.stop(None)


def _target(server: _Server) -> loadgen.TargetSpec:
    return loadgen.TargetSpec("tests.bench.test_loadgen:make_target", {"address": f"127.0.0.1:{server.port}"})


def test_arrival_schedules_are_exact() -> None:
    constant = loadgen.arrival_offsets(250.0, 1000, "constant", seed=1)
    assert np.allclose(np.diff(constant), 1 / 250.0)
    poisson = loadgen.arrival_offsets(250.0, 20000, "poisson", seed=1)
    assert poisson[0] == 0.0 and np.all(np.diff(poisson) >= 0)
    assert abs(np.diff(poisson).mean() - 1 / 250.0) < 0.1 / 250.0
    assert np.array_equal(poisson, loadgen.arrival_offsets(250.0, 20000, "poisson", seed=1))


async def test_open_loop_sends_the_scheduled_count_at_the_rate(echo: _Server) -> None:
    spec = loadgen.LoadSpec(mode="open", rate=200.0, duration_s=1.0)
    started = time.monotonic()
    result = await loadgen.run_async(_target(echo), spec)
    assert result.sent == result.ok == len(echo.arrivals) == 200
    assert result.errors == {}
    # The last request is scheduled 199 gaps of 5 ms after the run began and is never sent
    # before its time. (Measured from the start, not from the first arrival: the first
    # request also waits for the channel to connect, so the arrivals' own span can be shorter.)
    assert echo.arrivals[-1] - started >= 0.995
    assert echo.arrivals[-1] - started <= 5.0  # and not stretched out (generous: a slow box)
    assert result.elapsed_s >= 0.99
    # The measured window (wall clock) and the client's CPU in it, for bench.cpu's per-process table.
    assert result.window[1] - result.window[0] == pytest.approx(result.elapsed_s, rel=0.05)
    assert result.client_cpu_s > 0


async def test_request_bound_stops_early(echo: _Server) -> None:
    spec = loadgen.LoadSpec(mode="open", rate=200.0, duration_s=30.0, max_requests=50)
    started = time.monotonic()
    result = await loadgen.run_async(_target(echo), spec)
    assert result.sent == result.ok == len(echo.arrivals) == 50
    assert time.monotonic() - started < 10.0


async def test_stall_shows_in_open_loop_tail_but_not_closed_loop(stalled: _Server) -> None:
    # Open loop keeps sending during the 400 ms stall: ~80 requests wait behind it, and each
    # one's latency counts from when it *should* have been sent.
    open_result = await loadgen.run_async(_target(stalled), loadgen.LoadSpec(mode="open", rate=200.0, duration_s=1.0))
    assert open_result.ok == 200
    assert open_result.latency_ms["p99"] >= 0.75 * STALL_S * 1000
    assert open_result.latency_ms["p90"] >= 0.25 * STALL_S * 1000

    # A closed loop with one worker sends nothing while it waits: one slow sample out of
    # many, the coordinated omission that open loop exists to avoid.
    stalled.arrivals.clear()
    closed = await loadgen.run_async(
        _target(stalled), loadgen.LoadSpec(mode="closed", concurrency=1, duration_s=1.0, max_requests=400)
    )
    assert closed.ok >= 30
    assert closed.latency_ms["max"] >= 0.75 * STALL_S * 1000
    assert closed.latency_ms["p90"] < 0.25 * STALL_S * 1000


@pytest.mark.integration  # spawns load generator processes
async def test_several_processes_split_the_rate(echo: _Server) -> None:
    spec = loadgen.LoadSpec(mode="open", rate=100.0, duration_s=1.0, processes=2)
    started = time.monotonic()
    result = await asyncio.to_thread(loadgen.run, _target(echo), spec, 0.5)
    assert result.processes == 2
    assert result.sent == result.ok == len(echo.arrivals) == 100
    # Both processes start on one shared clock, 0.5 s + 0.3 s per process from now, and their
    # merged schedule ends 0.99 s later; no request is sent before its time. (Not the
    # arrivals' own span: a process's first request also waits for its channel to connect.)
    assert max(echo.arrivals) - started >= 0.5 + 0.6 + 0.9


def test_percentiles_are_exact_order_statistics() -> None:
    stats = loadgen.summarize_latencies([i / 1000.0 for i in range(1, 1001)])  # 1..1000 ms
    assert stats["p50"] == pytest.approx(500.0)
    assert stats["p99"] == pytest.approx(990.0)
    assert stats["p99.9"] == pytest.approx(999.0)
    assert stats["max"] == pytest.approx(1000.0)
