"""Server-side batch jobs: domain types and the ports the core needs (job store, job files).

A job is cut into chunks (predmesh.common.batchfiles). The store (Redis in production) holds
each job's spec, state and counters, the set of checkpointed chunks and one lease per chunk being
scored: any gateway replica may take an unleased, unfinished chunk, and a replica killed with
its lease held only delays that chunk until the lease expires.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What was submitted, with the input's size (fixed at submission)."""

    job_id: str
    owner: str  # API key name: only this owner sees the job
    model: str
    version: str
    input: str  # normalized location (allowed-roots policy)
    output: str
    chunk_rows: int
    entity_column: str
    rows_total: int
    chunks_total: int
    created_ms: int

    @property
    def parts(self) -> str:
        """Where this job's chunk checkpoints live (per job: two jobs never share part files)."""
        return f"{self.output}.parts/{self.job_id}"

    def same_request(self, other: JobSpec) -> bool:
        """A retried submit: the same owner and the same job (sizes and times aside)."""
        fields = ("owner", "model", "version", "input", "output", "chunk_rows", "entity_column")
        return all(getattr(self, f) == getattr(other, f) for f in fields)


@dataclass(frozen=True, slots=True)
class JobStatus:
    spec: JobSpec
    state: JobState
    rows_done: int = 0
    rows_failed: int = 0
    chunks_done: int = 0
    started_ms: int = 0  # first chunk leased (0 = not yet)
    finished_ms: int = 0
    error: str = ""

    def rate(self, now_ms: int) -> tuple[float, float]:
        """(rows/s since the job started, seconds left at that rate; 0 when unknown or finished)."""
        end = self.finished_ms or now_ms
        if not self.started_ms or end <= self.started_ms or not self.rows_done:
            return 0.0, 0.0
        rate = self.rows_done / ((end - self.started_ms) / 1e3)
        left = 0.0 if self.state.terminal else (self.spec.rows_total - self.rows_done) / rate
        return rate, left


@dataclass(frozen=True, slots=True)
class Lease:
    """What `JobStore.lease` handed a worker: a chunk to score, or the job's final join."""

    job_id: str
    chunk: int  # -1 = finalize (every chunk is checkpointed: join the parts into the output)


class JobStore(Protocol):
    """Shared job state. Every method raises Unavailable when the store cannot be reached."""

    async def create(self, spec: JobSpec, ttl_s: float) -> JobStatus:
        """Store a QUEUED job unless its id exists; the stored job either way."""

    async def get(self, job_id: str) -> JobStatus | None: ...

    async def active(self) -> list[str]:
        """Ids of the jobs not finished (QUEUED or RUNNING)."""

    async def finish(self, job_id: str, state: JobState, error: str, now_ms: int, ttl_s: float) -> bool:
        """Move a job that is not finished yet to a terminal state; False when it already was."""

    async def lease(self, job_id: str, worker: str, lease_s: float, now_ms: int) -> Lease | None:
        """Lease the first chunk neither checkpointed nor leased (the job becomes RUNNING), or the
        final join once every chunk is checkpointed; None when there is nothing to take now."""

    async def renew(self, lease: Lease, worker: str, lease_s: float) -> bool:
        """Extend a lease this worker still holds; False when it was lost (expired and taken)."""

    async def checkpoint(self, lease: Lease, worker: str, rows: int, failed: int) -> bool:
        """Record a chunk as checkpointed (its part file is written) and drop its lease; the counters
        move only the first time a chunk is recorded (a chunk scored twice counts once)."""

    async def release(self, lease: Lease, worker: str) -> None:
        """Drop a lease this worker holds (a chunk given up: another worker may take it now)."""


class JobFiles(Protocol):
    """The job's files (predmesh.common.batchfiles). Blocking: the core calls these in a thread.
    Raise FileNotFoundError for a missing input, ValueError for an unusable one, OSError otherwise."""

    def describe(self, location: str) -> tuple[int, list[str]]:
        """(rows, columns) of an input file."""

    def read_chunk(self, spec: JobSpec, chunk: int) -> Sequence[dict[str, Any]]:
        """The input rows of one chunk (a sequence that may convert rows lazily, slice by slice)."""

    def write_chunk(
        self, spec: JobSpec, chunk: int, rows: Sequence[dict[str, Any]], results: Sequence[dict[str, Any]]
    ) -> None:
        """Checkpoint one chunk: its part file, written whole or not at all."""

    def finalize(self, spec: JobSpec) -> None:
        """Join every part into the output file (all of it or nothing)."""

    def remove_parts(self, spec: JobSpec) -> None:
        """Delete the job's part files (after the join, or of a cancelled or failed job); nothing when
        there are none."""
