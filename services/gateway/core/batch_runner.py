"""The batch job worker of one gateway replica: takes chunk leases from the shared store and scores them.

Every replica runs `workers` loops. A loop asks the store for a lease on the first chunk of an
active job that is neither checkpointed nor leased; while it holds the lease a heartbeat renews it
every `lease_s / 3`. A chunk is read from the input, scored (core/batch_scoring.py, batch lane),
written as its part file and only then recorded as checkpointed, so a replica killed at any point
leaves either a recorded part or a lease that expires: another replica (or the restarted one) takes
the chunk again and writes the same part file (replaced whole; the counters move once). When every
chunk is checkpointed one replica leases the final join, writes the output, marks the job DONE and
removes the parts. An unreadable input or unwritable output marks the job FAILED; a failed job's
parts are removed, and so are a cancelled job's (by the cancel, and again by a worker whose chunk
in flight was written after it). Chunks of one job thus spread over
every replica at cluster scale, one lease at a time per loop.

Lifecycle: `start()` launches the loops, `stop()` cancels them (a chunk in flight is given back:
its lease is released when the store is reachable, else it expires). One event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.gateway.core.batch_ports import JobFiles, JobSpec, JobState, JobStore, Lease
from services.gateway.core.batch_scoring import Abandoned, ChunkScorer
from services.gateway.errors import Unavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunnerLimits:
    lease_s: float = 15.0
    poll_s: float = 0.5
    workers: int = 1
    job_ttl_s: float = 7 * 86400.0


class BatchRunner:
    def __init__(
        self,
        store: JobStore,
        files: JobFiles,
        scorer: ChunkScorer,
        limits: RunnerLimits,
        worker_id: str,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        on_chunk: Callable[[int, int], None] = lambda rows, failed: None,
    ) -> None:
        self._store = store
        self._files = files
        self._scorer = scorer
        self._limits = limits
        self._worker = worker_id
        self._clock_ms = clock_ms
        self._on_chunk = on_chunk
        self._tasks: list[asyncio.Task[None]] = []
        # Set by stop(): loops end even when a cancellation was swallowed by a client library and
        # came back as an ordinary error (redis.asyncio may turn one into a connection error).
        self._stopping = False

    def start(self) -> None:
        for i in range(max(1, self._limits.workers)):
            self._tasks.append(asyncio.create_task(self._loop(), name=f"batch-runner-{i}"))

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                lease = await self._next()
            except Unavailable as err:
                log.warning("batch jobs: store unavailable (%s)", err)
                lease = None
            if lease is None:
                await asyncio.sleep(self._limits.poll_s)
                continue
            try:
                await self._work(lease)
            except Unavailable as err:  # the lease expires on its own
                log.warning("batch job %s: store unavailable mid-chunk (%s)", lease.job_id, err)
            except Exception:
                log.exception("batch job %s chunk %d: unexpected error", lease.job_id, lease.chunk)
                await self._fail(lease.job_id, "internal error while scoring")

    async def _next(self) -> Lease | None:
        for job_id in await self._store.active():
            lease = await self._store.lease(job_id, self._worker, self._limits.lease_s, self._clock_ms())
            if lease is not None:
                return lease
        return None

    async def _work(self, lease: Lease) -> None:
        status = await self._store.get(lease.job_id)
        if status is None or status.state.terminal:
            await self._store.release(lease, self._worker)
            return
        lost = asyncio.Event()
        heartbeat = asyncio.create_task(self._heartbeat(lease, lost))
        try:
            if lease.chunk < 0:
                await self._finalize(status.spec)
            else:
                await self._chunk(status.spec, lease, lost)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._store.release(lease, self._worker))
            raise
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)

    async def _chunk(self, spec: JobSpec, lease: Lease, lost: asyncio.Event) -> None:
        async def keep_going() -> bool:
            if lost.is_set():
                return False
            found = await self._store.get(spec.job_id)
            return found is not None and not found.state.terminal

        try:
            rows = await asyncio.to_thread(self._files.read_chunk, spec, lease.chunk)
        except (OSError, ValueError) as err:
            await self._fail(spec.job_id, f"input unreadable: {type(err).__name__}")
            return
        try:
            results = await self._scorer.score(spec, lease.chunk, rows, keep_going)
        except Abandoned:
            if not lost.is_set():
                await self._store.release(lease, self._worker)
            return
        if lost.is_set():  # another worker has the chunk now: it writes the part
            return
        try:
            await asyncio.to_thread(self._files.write_chunk, spec, lease.chunk, rows, results)
        except (OSError, ValueError) as err:
            await self._fail(spec.job_id, f"output not writable: {type(err).__name__}")
            return
        failed = sum(1 for r in results if r.get("error"))
        if await self._store.checkpoint(lease, self._worker, len(rows), failed):
            self._on_chunk(len(rows), failed)
        after = await self._store.get(spec.job_id)
        if after is None or after.state in (JobState.CANCELLED, JobState.FAILED):
            await self._remove_parts(spec)  # cancelled while this chunk was scored: its part was written late

    async def _finalize(self, spec: JobSpec) -> None:
        try:
            await asyncio.to_thread(self._files.finalize, spec)
        except (OSError, ValueError) as err:
            await self._fail(spec.job_id, f"output not writable: {type(err).__name__}")
            return
        await self._store.finish(spec.job_id, JobState.DONE, "", self._clock_ms(), self._limits.job_ttl_s)
        log.info("batch job %s done (%d rows)", spec.job_id, spec.rows_total)
        await self._remove_parts(spec)  # the output holds every row now

    async def _fail(self, job_id: str, error: str) -> None:
        log.warning("batch job %s failed: %s", job_id, error)
        with contextlib.suppress(Unavailable):
            await self._store.finish(job_id, JobState.FAILED, error, self._clock_ms(), self._limits.job_ttl_s)
            found = await self._store.get(job_id)
            if found is not None and found.state == JobState.FAILED:
                await self._remove_parts(found.spec)

    async def _remove_parts(self, spec: JobSpec) -> None:
        """Best effort: a part left behind wastes space, it never makes wrong output."""
        try:
            await asyncio.to_thread(self._files.remove_parts, spec)
        except (OSError, ValueError) as err:
            log.warning("batch job %s: parts not removed (%s)", spec.job_id, type(err).__name__)

    async def _heartbeat(self, lease: Lease, lost: asyncio.Event) -> None:
        while not self._stopping:
            await asyncio.sleep(self._limits.lease_s / 3)
            try:
                held = await self._store.renew(lease, self._worker, self._limits.lease_s)
            except Unavailable:
                continue  # try again; the lease may still be valid
            if not held:
                log.warning("batch job %s chunk %d: lease lost", lease.job_id, lease.chunk)
                lost.set()
                return
