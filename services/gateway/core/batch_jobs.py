"""Server-side batch jobs: submit, look up and cancel (BatchJobService's core).

`BatchJobs` validates a submission (paths under the allowed roots, a known format, the entity
column present, a size within limits), stores it QUEUED and returns it; `BatchRunner`
(core/batch_runner.py) on every gateway replica then scores it. A job is visible only to the API
key name that submitted it (NotFound for anyone else, like an unknown id). Submitting again with
the same `job_id` and the same request returns the stored job (a retried call); a different request
under a taken id is InvalidArgument. One event loop; file checks run in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from predmesh.common import batchfiles
from services.gateway.core.batch_paths import PathPolicy
from services.gateway.core.batch_ports import JobFiles, JobSpec, JobState, JobStatus, JobStore
from services.gateway.errors import InvalidArgument, NotFound, PermissionDenied

log = logging.getLogger(__name__)

_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_COLUMN = re.compile(r"^[^\x00-\x1f]{1,128}$")


@dataclass(frozen=True)
class BatchLimits:
    default_chunk_rows: int = 4096
    max_chunk_rows: int = 50_000
    max_rows: int = 50_000_000
    job_ttl_s: float = 7 * 86400.0  # how long a job (and its status) stays in the store


@dataclass(frozen=True)
class Submission:
    owner: str
    model: str
    version: str
    input: str
    output: str
    chunk_rows: int = 0
    entity_column: str = ""
    job_id: str = ""


class BatchJobs:
    def __init__(
        self,
        store: JobStore,
        files: JobFiles,
        paths: PathPolicy,
        limits: BatchLimits,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._store = store
        self._files = files
        self._paths = paths
        self._limits = limits
        self._clock_ms = clock_ms

    async def submit(self, sub: Submission) -> JobStatus:
        if not sub.model:
            raise InvalidArgument("model is required")
        if sub.job_id and not _JOB_ID.match(sub.job_id):
            raise InvalidArgument("job_id: 1-64 letters, digits, '-' or '_'")
        chunk_rows = sub.chunk_rows or self._limits.default_chunk_rows
        if chunk_rows > self._limits.max_chunk_rows:
            raise InvalidArgument(f"chunk_rows must be at most {self._limits.max_chunk_rows}")
        entity_column = sub.entity_column or "entity_id"
        if not _COLUMN.match(entity_column):
            raise InvalidArgument("entity_column is not a valid column name")
        if not self._paths.enabled:
            raise PermissionDenied("batch jobs may not read or write any file on this gateway (no allowed roots)")
        source, target, rows = await asyncio.to_thread(self._check_files, sub.input, sub.output, entity_column)
        if rows > self._limits.max_rows:
            raise InvalidArgument(f"input has {rows} rows; a job takes at most {self._limits.max_rows}")
        spec = JobSpec(
            job_id=sub.job_id or uuid.uuid4().hex,
            owner=sub.owner,
            model=sub.model,
            version=sub.version,
            input=source,
            output=target,
            chunk_rows=chunk_rows,
            entity_column=entity_column,
            rows_total=rows,
            chunks_total=batchfiles.chunk_count(rows, chunk_rows),
            created_ms=self._clock_ms(),
        )
        stored = await self._store.create(spec, self._limits.job_ttl_s)
        if not stored.spec.same_request(spec):
            raise InvalidArgument(f"job_id {spec.job_id!r} is taken by another job")
        return stored

    def _check_files(self, source: str, target: str, entity_column: str) -> tuple[str, str, int]:
        """Blocking (thread): both locations allowed, formats known, the input readable with the entity column."""
        source = self._paths.check(source, "input")
        target = self._paths.check(target, "output")
        for location, what in ((source, "input"), (target, "output")):
            if not batchfiles.has_known_format(location):
                raise InvalidArgument(f"{what} must end in .parquet or .csv")
        if source == target:
            raise InvalidArgument("output must not be the input")
        try:
            rows, columns = self._files.describe(source)
        except FileNotFoundError:
            raise NotFound("input file not found") from None
        except (ValueError, OSError) as err:
            raise InvalidArgument(f"input is not a readable Parquet/CSV file ({type(err).__name__})") from None
        if entity_column not in columns:
            raise InvalidArgument(f"input has no {entity_column!r} column")
        return source, target, rows

    async def get(self, owner: str, job_id: str) -> JobStatus:
        if not job_id:
            raise InvalidArgument("job_id is required")
        found = await self._store.get(job_id) if _JOB_ID.match(job_id) else None
        if found is None or found.spec.owner != owner:
            raise NotFound("no such batch job")
        return found

    async def cancel(self, owner: str, job_id: str) -> JobStatus:
        """CANCELLED unless the job already finished (then it is returned as it is); a cancelled job's
        part files are removed (a chunk still being scored removes them again once written)."""
        await self.get(owner, job_id)
        await self._store.finish(job_id, JobState.CANCELLED, "", self._clock_ms(), self._limits.job_ttl_s)
        found = await self.get(owner, job_id)
        if found.state == JobState.CANCELLED:
            try:
                await asyncio.to_thread(self._files.remove_parts, found.spec)
            except (OSError, ValueError) as err:  # best effort: the job is cancelled either way
                log.warning("batch job %s: parts not removed (%s)", job_id, type(err).__name__)
        return found

    def now_ms(self) -> int:
        return self._clock_ms()
