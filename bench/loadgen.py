"""Open-loop and closed-loop load generation on asyncio, optionally over several processes.

Open loop: request i has an *intended* send time fixed in advance (constant rate:
``start + i / rate``; Poisson: cumulative exponential gaps from a seeded RNG), whatever
the server does. Its latency is ``completion - intended send time``, so a server stall
(or a client that falls behind) shows up in the tail instead of being hidden by the
client quietly sending less (coordinated omission). Closed loop: ``concurrency`` workers
each send, wait and send again: the way to find a maximum throughput, not a latency.

Both are bounded: a run stops after ``duration_s`` or ``max_requests`` (whichever comes
first), then waits at most ``drain_s`` for outstanding requests; requests still open
then are counted as ``CLIENT_TIMEOUT`` errors with no latency.

A *target* is what one request does. It is named by a picklable ``TargetSpec``
(``"module:function"`` plus keyword arguments) so child processes can build their own:
the function is ``async def factory(**kwargs) -> Target`` and returns an object with
``async call() -> str`` (the status name, ``"OK"`` on success) and ``async close()``.
Each process builds one target (one channel / HTTP session) and reuses it.

Latencies are kept exactly (one float per request, merged across processes and
sorted once), so percentiles are exact order statistics, not histogram buckets.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import math
import multiprocessing as mp
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

OK = "OK"
CLIENT_TIMEOUT = "CLIENT_TIMEOUT"
# A send more than this late counts as "late" (client lag; asyncio timers alone can add ~1 ms).
LATE_SEND_S = 0.002
# Latencies and schedules use perf_counter, not loop.time(): uvloop's clock (used in client
# processes when installed) ticks in whole milliseconds.
_now = time.perf_counter


class Target(Protocol):
    async def call(self) -> str: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class TargetSpec:
    """Where to find a target factory (``"pkg.module:function"``) and its keyword arguments."""

    factory: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    # Predictions (rows) one successful call produces, for predictions/s of batch calls.
    items_per_call: int = 1

    def resolve(self) -> Callable[..., Any]:
        module, _, name = self.factory.partition(":")
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class LoadSpec:
    """One measurement. ``mode`` is ``"open"`` (needs ``rate``) or ``"closed"`` (needs ``concurrency``).

    ``rate`` is the total offered rate (requests/s) over all processes; ``duration_s`` and
    ``max_requests`` bound the run (both apply); ``processes`` > 1 splits the load over
    that many client processes (each with its own event loop) because of the GIL.
    """

    mode: str = "open"
    rate: float = 100.0
    arrival: str = "constant"  # or "poisson"
    concurrency: int = 16
    duration_s: float = 10.0
    max_requests: int = 1_000_000
    warmup_requests: int = 0  # sent closed-loop (concurrency 4) before measuring, not recorded
    processes: int = 1
    max_inflight: int = 10_000  # open loop: at most this many outstanding; later sends wait (and are late)
    drain_s: float = 5.0
    seed: int = 1


def arrival_offsets(rate: float, n: int, arrival: str, seed: int) -> np.ndarray:
    """Intended send times (seconds from start) of ``n`` requests at ``rate`` per second."""
    if rate <= 0:
        raise ValueError("rate must be > 0")
    if arrival == "constant":
        return np.arange(n, dtype=np.float64) / rate
    if arrival == "poisson":
        gaps = np.random.default_rng(seed).exponential(1.0 / rate, n)
        return np.concatenate(([0.0], np.cumsum(gaps[:-1])))
    raise ValueError(f"unknown arrival process {arrival!r} (constant or poisson)")


@dataclass
class _Part:
    """What one process measured (plain data, sent back over a pipe)."""

    latencies: list[float]
    statuses: dict[str, int]
    sent: int
    late_sends: int
    max_send_lag_s: float
    start: float  # wall clock (time.time) of the first intended send
    end: float  # wall clock of the last completion
    cpu_s: float = 0.0  # this client process's CPU time (all threads) during the measured phase


async def _warmup(target: Target, n: int) -> None:
    if n <= 0:
        return
    remaining = [n]

    async def worker() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            with contextlib.suppress(Exception):
                await target.call()

    await asyncio.gather(*(worker() for _ in range(min(4, n))))


async def _timed_call(target: Target) -> str:
    try:
        return await target.call()
    except Exception as err:  # a target should map errors itself; anything else is a client error
        return f"CLIENT_{type(err).__name__}"


async def _open_loop(target: Target, spec: LoadSpec, rate: float, seed: int, start_wall: float) -> _Part:
    n = max(0, min(spec.max_requests, math.ceil(spec.duration_s * rate)))
    offsets = arrival_offsets(rate, n, spec.arrival, seed) if n else np.zeros(0)
    offsets = offsets[offsets < spec.duration_s]
    loop = asyncio.get_running_loop()
    # Align this process's monotonic clock to the shared wall-clock start.
    t0 = _now() + max(0.0, start_wall - time.time())
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    tasks: set[asyncio.Task[None]] = set()
    slots = asyncio.Semaphore(spec.max_inflight)
    late = 0
    max_lag = 0.0
    last_done = [t0]

    async def one(intended: float) -> None:
        try:
            status = await _timed_call(target)
            done = _now()
            latencies.append(done - intended)
            statuses[status] += 1
            last_done[0] = max(last_done[0], done)
        finally:
            slots.release()

    for off in offsets:
        intended = t0 + float(off)
        delay = intended - _now()
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()
        lag = _now() - intended
        if lag > LATE_SEND_S:
            late += 1
        max_lag = max(max_lag, lag)
        task = loop.create_task(one(intended))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=spec.drain_s)
        for task in pending:
            task.cancel()
        statuses[CLIENT_TIMEOUT] += len(pending)
        with contextlib.suppress(Exception):
            await asyncio.gather(*pending, return_exceptions=True)
    wall_of = time.time() - _now()
    return _Part(latencies, dict(statuses), len(offsets), late, max_lag, t0 + wall_of, last_done[0] + wall_of)


async def _closed_loop(target: Target, spec: LoadSpec, concurrency: int, max_requests: int) -> _Part:
    loop = asyncio.get_running_loop()
    t0 = _now()
    stop_at = t0 + spec.duration_s
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    budget = [max_requests]

    async def worker() -> None:
        while budget[0] > 0 and _now() < stop_at:
            budget[0] -= 1
            began = _now()
            status = await _timed_call(target)
            latencies.append(_now() - began)
            statuses[status] += 1

    workers = [loop.create_task(worker()) for _ in range(concurrency)]
    _, pending = await asyncio.wait(workers, timeout=spec.duration_s + spec.drain_s)
    for task in pending:
        task.cancel()
    statuses[CLIENT_TIMEOUT] += len(pending)
    end = _now()
    wall_of = time.time() - end
    sent = sum(statuses.values())
    return _Part(latencies, dict(statuses), sent, 0, 0.0, t0 + wall_of, end + wall_of)


async def _run_part(target_spec: TargetSpec, spec: LoadSpec, index: int, start_wall: float) -> _Part:
    target: Target = await target_spec.resolve()(**target_spec.kwargs)
    try:
        await _warmup(target, spec.warmup_requests // spec.processes)
        cpu0 = time.process_time()
        if spec.mode == "open":
            rate = spec.rate / spec.processes
            seed = spec.seed * 1000 + index
            # Offset each process's constant-rate schedule so the merged stream stays evenly spaced.
            shift = index / spec.rate if spec.arrival == "constant" else 0.0
            part = await _open_loop(target, spec, rate, seed, start_wall + shift)
        elif spec.mode == "closed":
            conc = max(1, spec.concurrency // spec.processes + (index < spec.concurrency % spec.processes))
            part = await _closed_loop(target, spec, conc, max(1, spec.max_requests // spec.processes))
        else:
            raise ValueError(f"unknown mode {spec.mode!r} (open or closed)")
        part.cpu_s = time.process_time() - cpu0
        return part
    finally:
        await target.close()


def _child(target_spec: TargetSpec, spec: LoadSpec, index: int, start_wall: float, conn: Any) -> None:
    try:
        with contextlib.suppress(ImportError):
            import uvloop  # type: ignore[import-not-found]

            uvloop.install()
        conn.send(("ok", asdict(asyncio.run(_run_part(target_spec, spec, index, start_wall)))))
    except BaseException as err:
        conn.send(("error", f"{type(err).__name__}: {err}"))
    finally:
        conn.close()


@dataclass
class LoadResult:
    """Merged outcome of one measurement (all times in ms, rates per second)."""

    mode: str
    offered_rate: float | None
    concurrency: int | None
    processes: int
    sent: int
    completed: int
    ok: int
    errors: dict[str, int]
    elapsed_s: float
    throughput: float  # OK responses per second
    items_per_s: float  # OK responses x items_per_call per second
    latency_ms: dict[str, float]
    late_sends: int  # open loop: sends issued > 2 ms after their intended time (client lag)
    max_send_lag_ms: float
    window: tuple[float, float] = (0.0, 0.0)  # wall clock (time.time) of the measured phase
    client_cpu_s: float = 0.0  # CPU time of the client processes during the measured phase

    @property
    def error_rate(self) -> float:
        return (self.sent - self.ok) / self.sent if self.sent else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize_latencies(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Exact percentiles (ms) of latencies given in seconds; empty -> NaN."""
    arr = np.sort(np.asarray(values, dtype=np.float64)) * 1000.0
    if arr.size == 0:
        nan = float("nan")
        return {"p50": nan, "p90": nan, "p99": nan, "p99.9": nan, "max": nan, "mean": nan}

    def pct(q: float) -> float:
        # nearest-rank: the smallest value with at least q% of samples <= it
        rank = max(1, math.ceil(q * arr.size / 100.0 - 1e-9))
        return float(arr[rank - 1])

    return {
        "p50": pct(50),
        "p90": pct(90),
        "p99": pct(99),
        "p99.9": pct(99.9),
        "max": float(arr[-1]),
        "mean": float(arr.mean()),
    }


def _merge(parts: list[_Part], spec: LoadSpec, items_per_call: int) -> LoadResult:
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    for part in parts:
        statuses.update(part.statuses)
        latencies.extend(part.latencies)
    ok = statuses.get(OK, 0)
    start = min(p.start for p in parts)
    end = max(p.end for p in parts)
    if spec.mode == "open":
        # The schedule spans duration_s at least; a run is never credited for finishing early.
        elapsed = max(end - start, min(spec.duration_s, max(p.sent for p in parts) / (spec.rate / spec.processes)))
    else:
        elapsed = end - start
    elapsed = max(elapsed, 1e-9)
    return LoadResult(
        mode=spec.mode,
        offered_rate=spec.rate if spec.mode == "open" else None,
        concurrency=spec.concurrency if spec.mode == "closed" else None,
        processes=spec.processes,
        sent=sum(p.sent for p in parts),
        completed=sum(v for k, v in statuses.items() if k != CLIENT_TIMEOUT),
        ok=ok,
        errors={k: v for k, v in sorted(statuses.items()) if k != OK and v},
        elapsed_s=elapsed,
        throughput=ok / elapsed,
        items_per_s=ok * items_per_call / elapsed,
        latency_ms=summarize_latencies(latencies),
        late_sends=sum(p.late_sends for p in parts),
        max_send_lag_ms=max(p.max_send_lag_s for p in parts) * 1000.0,
        window=(start, end),
        client_cpu_s=sum(p.cpu_s for p in parts),
    )


async def run_async(target_spec: TargetSpec, spec: LoadSpec) -> LoadResult:
    """Run in the current event loop (one process; ``spec.processes`` must be 1)."""
    if spec.processes != 1:
        raise ValueError("run_async drives one process; use run() for several")
    part = await _run_part(target_spec, spec, 0, time.time() + 0.05)
    return _merge([part], spec, target_spec.items_per_call)


def run(target_spec: TargetSpec, spec: LoadSpec, start_delay_s: float = 1.0) -> LoadResult:
    """Run a measurement in ``spec.processes`` fresh client processes and merge their results.

    Blocks until every process is done (bounded by duration + drain + start delay, plus
    target setup); a process that fails raises RuntimeError with its error.
    """
    ctx = mp.get_context("spawn")
    start_wall = time.time() + start_delay_s + 0.3 * spec.processes
    procs = []
    for index in range(spec.processes):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(target_spec, spec, index, start_wall, child), daemon=True)
        proc.start()
        child.close()
        procs.append((proc, parent))
    parts: list[_Part] = []
    errors: list[str] = []
    budget = start_delay_s + 0.3 * spec.processes + spec.duration_s + spec.drain_s + 60.0
    deadline = time.monotonic() + budget
    for proc, conn in procs:
        if conn.poll(max(0.0, deadline - time.monotonic())):
            kind, payload = conn.recv()
            if kind == "ok":
                parts.append(_Part(**payload))
            else:
                errors.append(payload)
        else:
            errors.append("client process did not report in time")
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
    if errors:
        raise RuntimeError("load generator failed: " + "; ".join(errors))
    return _merge(parts, spec, target_spec.items_per_call)
