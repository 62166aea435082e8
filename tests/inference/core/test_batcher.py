"""MicroBatcher: demux, batch formation, backpressure, deadlines, drain (fake backend run)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from predmesh.common.deadline import Deadline
from predmesh.common.errors import DeadlineExceeded, ResourceExhausted, Unavailable
from services.inference.core.batcher import BatcherConfig, MicroBatcher


class Recorder:
    """A fake backend run: output row = 10 * input row id; records every batch."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.batches: list[np.ndarray] = []
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, batch: np.ndarray, deadline: Deadline | None) -> np.ndarray:
        self.batches.append(batch.copy())
        await self.release.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        return batch[:, :1] * 10.0

    @property
    def executed_ids(self) -> set[float]:
        return {float(v) for b in self.batches for v in b[:, 0]}


def rows(start: int, n: int) -> np.ndarray:
    ids = np.arange(start, start + n, dtype=np.float32)
    return np.stack([ids, -ids], axis=1)


async def test_concurrent_requests_get_exactly_their_rows_and_batches_form() -> None:
    run = Recorder(delay=0.002)
    batcher = MicroBatcher(run, BatcherConfig(max_batch_rows=32, max_wait_s=0.002, max_inflight_batches=1))
    batcher.start()
    sizes = [1 + (i * 7) % 9 for i in range(120)]  # 1..9 rows each
    starts = np.cumsum([0, *sizes[:-1]])
    try:
        outs = await asyncio.gather(*(batcher.submit(rows(int(s), n)) for s, n in zip(starts, sizes, strict=True)))
    finally:
        await batcher.stop()
    for start, n, out in zip(starts, sizes, outs, strict=True):
        np.testing.assert_array_equal(out[:, 0], np.arange(start, start + n) * 10.0)
    stats = batcher.stats()
    assert stats.requests == 120 and stats.rows == sum(sizes)
    assert stats.batches < 40, stats  # real batching: ~4+ requests per call
    assert max(stats.batch_rows) <= 32
    assert stats.mean_batch_requests > 3


async def test_oversized_request_runs_alone_and_order_is_kept() -> None:
    run = Recorder()
    batcher = MicroBatcher(run, BatcherConfig(max_batch_rows=4, max_wait_s=0.001))
    batcher.start()
    try:
        big, small = await asyncio.gather(batcher.submit(rows(0, 10)), batcher.submit(rows(10, 2)))
    finally:
        await batcher.stop()
    assert big.shape == (10, 1) and small.shape == (2, 1)
    assert [len(b) for b in run.batches] == [10, 2]


async def test_full_queue_is_resource_exhausted() -> None:
    run = Recorder()
    run.release.clear()  # the first batch blocks the backend
    batcher = MicroBatcher(run, BatcherConfig(max_batch_rows=1, max_wait_s=0, max_queue=3, max_inflight_batches=1))
    batcher.start()
    first = asyncio.ensure_future(batcher.submit(rows(0, 1)))
    await asyncio.sleep(0.01)  # in flight; the collector now waits for a free slot
    second = asyncio.ensure_future(batcher.submit(rows(1, 1)))  # taken by the collector, waiting
    await asyncio.sleep(0.01)
    queued = [asyncio.ensure_future(batcher.submit(rows(2 + i, 1))) for i in range(3)]
    await asyncio.sleep(0.01)
    with pytest.raises(ResourceExhausted, match="queue full"):
        await batcher.submit(rows(99, 1))
    assert batcher.stats().rejected == 1
    run.release.set()
    await asyncio.gather(first, second, *queued)
    await batcher.stop()
    assert 99.0 not in run.executed_ids


async def test_expired_requests_are_not_executed() -> None:
    run = Recorder()
    run.release.clear()
    batcher = MicroBatcher(run, BatcherConfig(max_batch_rows=8, max_wait_s=0, max_inflight_batches=1))
    batcher.start()
    blocker = asyncio.ensure_future(batcher.submit(rows(0, 1)))
    await asyncio.sleep(0.01)
    late = asyncio.ensure_future(batcher.submit(rows(50, 3), Deadline.after(0.02)))
    fine = asyncio.ensure_future(batcher.submit(rows(60, 2), Deadline.after(5.0)))
    await asyncio.sleep(0.05)  # `late` expires while queued
    run.release.set()
    with pytest.raises(DeadlineExceeded, match="queued"):
        await late
    np.testing.assert_array_equal((await fine)[:, 0], [600.0, 610.0])
    await blocker
    await batcher.stop()
    assert not {50.0, 51.0, 52.0} & run.executed_ids
    assert batcher.stats().expired == 1
    with pytest.raises(Unavailable):
        await batcher.submit(rows(0, 1))


async def test_already_expired_deadline_is_refused_at_once() -> None:
    batcher = MicroBatcher(Recorder())
    batcher.start()
    with pytest.raises(DeadlineExceeded):
        await batcher.submit(rows(0, 1), Deadline.after(-1))
    await batcher.stop()


async def test_batch_error_reaches_every_caller_and_stop_drains_queue() -> None:
    async def fail(batch: np.ndarray, deadline: Deadline | None) -> np.ndarray:
        raise Unavailable("worker down")

    batcher = MicroBatcher(fail, BatcherConfig(max_batch_rows=8, max_wait_s=0.001))
    batcher.start()
    results = await asyncio.gather(*(batcher.submit(rows(i, 1)) for i in range(5)), return_exceptions=True)
    assert all(isinstance(r, Unavailable) for r in results)
    assert batcher.stats().failed_batches >= 1

    run = Recorder(delay=0.01)
    drained = MicroBatcher(run, BatcherConfig(max_batch_rows=2, max_wait_s=0.001))
    drained.start()
    pending = [asyncio.ensure_future(drained.submit(rows(i, 1))) for i in range(6)]
    await asyncio.sleep(0)
    await drained.stop()  # queued requests still run
    assert [float(p.result()[0, 0]) for p in pending] == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]
    await batcher.stop()


async def test_cancelled_caller_is_skipped() -> None:
    run = Recorder()
    run.release.clear()
    batcher = MicroBatcher(run, BatcherConfig(max_batch_rows=8, max_wait_s=0, max_inflight_batches=1))
    batcher.start()
    blocker = asyncio.ensure_future(batcher.submit(rows(0, 1)))
    await asyncio.sleep(0.01)
    gone = asyncio.ensure_future(batcher.submit(rows(70, 1)))
    await asyncio.sleep(0.01)
    gone.cancel()
    run.release.set()
    await blocker
    await batcher.stop()
    assert 70.0 not in run.executed_ids


async def test_a_batch_that_cannot_be_stacked_fails_every_caller_at_once() -> None:
    """np.concatenate raising (rows of different widths) used to escape the try: callers hung to their deadline."""
    run = Recorder()
    batcher = MicroBatcher(run, BatcherConfig(max_batch_rows=8, max_wait_s=0.05))
    batcher.start()
    try:
        narrow = asyncio.ensure_future(batcher.submit(np.zeros((1, 2), dtype=np.float32)))
        wide = asyncio.ensure_future(batcher.submit(np.zeros((1, 3), dtype=np.float32)))
        done, pending = await asyncio.wait({narrow, wide}, timeout=10)
        assert not pending, "callers left waiting"
        for fut in done:
            with pytest.raises(ValueError):
                fut.result()
        assert run.batches == []
        assert batcher.stats().failed_batches == 1
        assert (await batcher.submit(rows(0, 2))).tolist() == [[0.0], [10.0]]  # the batcher still serves
    finally:
        await batcher.stop()


class _BrokenHistogram:
    def labels(self, *_: str) -> _BrokenHistogram:
        return self

    def observe(self, _value: float) -> None:
        raise RuntimeError("metrics backend broken")

    def set(self, _value: float) -> None:
        pass


class _BrokenMetrics:
    batch_size = queue_wait = queue_depth = _BrokenHistogram()


async def test_a_failing_stats_update_fails_the_callers_instead_of_leaving_them_waiting() -> None:
    batcher = MicroBatcher(Recorder(), BatcherConfig(max_wait_s=0.001), metrics=_BrokenMetrics())  # type: ignore[arg-type]
    batcher.start()
    try:
        fut = asyncio.ensure_future(batcher.submit(rows(0, 1)))
        done, _ = await asyncio.wait({fut}, timeout=10)
        assert done, "caller left waiting"
        with pytest.raises(RuntimeError, match="metrics backend broken"):
            fut.result()
    finally:
        await batcher.stop()


async def test_realtime_requests_are_served_before_queued_batch_work() -> None:
    run = Recorder()
    running = asyncio.Event()

    async def recorded(batch: np.ndarray, deadline: Deadline | None) -> np.ndarray:
        running.set()
        return await run(batch, deadline)

    batcher = MicroBatcher(recorded, BatcherConfig(max_batch_rows=4, max_wait_s=0.0, max_inflight_batches=1))
    batcher.start()
    try:
        run.release.clear()  # the first batch holds the only execution slot
        first = asyncio.ensure_future(batcher.submit(rows(0, 4), priority=3))
        await asyncio.wait_for(running.wait(), 5)
        background = [asyncio.ensure_future(batcher.submit(rows(100 + 4 * i, 3), priority=3)) for i in range(3)]
        await asyncio.sleep(0)
        realtime = [asyncio.ensure_future(batcher.submit(rows(200 + i, 1), priority=p)) for i, p in enumerate((1, 0))]
        await asyncio.sleep(0)
        run.release.set()
        await asyncio.wait_for(asyncio.gather(first, *background, *realtime), 5)
    finally:
        await batcher.stop()
    order = [sorted(float(v) for v in b[:, 0]) for b in run.batches]
    # queued after three batch requests, the two real-time ones leave in the very next batch
    # (filled up with background rows only as far as they fit: 1 + 1 + 3 > 4, so alone)
    assert order[1] == [200.0, 201.0], order
    assert [b[0] for b in order[2:]] == [100.0, 104.0, 108.0]
    np.testing.assert_array_equal(realtime[0].result()[:, 0], [2000.0])


async def test_an_idle_batcher_sends_a_lone_request_at_once_and_a_busy_one_waits_for_company() -> None:
    run = Recorder()
    batcher = MicroBatcher(run, BatcherConfig(max_batch_rows=8, max_wait_s=30.0, max_inflight_batches=2))
    batcher.start()
    try:
        # Idle: the 30 s window is not waited for (a lone request has nobody to wait for).
        out = await asyncio.wait_for(batcher.submit(rows(0, 1)), timeout=5)
        assert out.tolist() == [[0.0]]
        # Busy: one batch held in the backend; the next request waits in its window and the one
        # after it joins (one batch of two), which leaves when the window's size limit is reached.
        run.release.clear()
        held = asyncio.ensure_future(batcher.submit(rows(1, 1)))
        await asyncio.sleep(0.05)
        assert len(run.batches) == 2  # the held request left at once too (nothing was executing)
        joined = [asyncio.ensure_future(batcher.submit(rows(2 + i, 1))) for i in range(2)]
        await asyncio.sleep(0.05)
        assert len(run.batches) == 2, "a request sent while a batch executes must wait for its window"
        more = [asyncio.ensure_future(batcher.submit(rows(4 + i, 3))) for i in range(2)]  # 2 + 6 = 8 rows: full
        run.release.set()
        outs = await asyncio.wait_for(asyncio.gather(held, *joined, *more), timeout=5)
        assert [len(o) for o in outs] == [1, 1, 1, 3, 3]
        assert [len(b) for b in run.batches] == [1, 1, 8]
    finally:
        run.release.set()
        await batcher.stop()
