"""JobFiles on pyarrow/fsspec (predmesh.common.batchfiles): the files of server-side batch jobs.

Keeps the input tables of the last `cache_jobs` jobs in memory, so a replica reads an input once
for all the chunks it scores (not once per chunk). Blocking: the core calls every method from a
thread; a lock guards the cache (thread-safe).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from predmesh.common import batchfiles
from services.gateway.core.batch_ports import JobSpec


class ArrowJobFiles:
    def __init__(self, cache_jobs: int = 2) -> None:
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._cache_jobs = max(1, cache_jobs)
        self._lock = threading.Lock()

    def describe(self, location: str) -> tuple[int, list[str]]:
        return batchfiles.count_rows(location)

    def _table(self, spec: JobSpec) -> Any:
        with self._lock:
            table = self._cache.get(spec.job_id)
            if table is not None:
                self._cache.move_to_end(spec.job_id)
                return table
        table = batchfiles.read_table(spec.input)
        if table.num_rows != spec.rows_total:
            raise ValueError(f"input changed since submission ({table.num_rows} rows, was {spec.rows_total})")
        with self._lock:
            self._cache[spec.job_id] = table
            while len(self._cache) > self._cache_jobs:
                self._cache.popitem(last=False)
        return table

    def read_chunk(self, spec: JobSpec, chunk: int) -> Sequence[dict[str, Any]]:
        """The chunk's rows, converted to dicts only slice by slice as the scorer asks (no GIL-long stall)."""
        start, size = batchfiles.chunk_bounds(spec.rows_total, spec.chunk_rows, chunk)
        return batchfiles.TableRows(self._table(spec).slice(start, size))

    def write_chunk(
        self, spec: JobSpec, chunk: int, rows: Sequence[dict[str, Any]], results: Sequence[dict[str, Any]]
    ) -> None:
        start, _ = batchfiles.chunk_bounds(spec.rows_total, spec.chunk_rows, chunk)
        batchfiles.make_dirs(spec.parts)
        table = batchfiles.chunk_table(start, rows, results, spec.entity_column)
        batchfiles.write_atomic(table, batchfiles.part_location(spec.parts, chunk))

    def finalize(self, spec: JobSpec) -> None:
        batchfiles.join_parts(spec.parts, spec.chunks_total, spec.output)

    def remove_parts(self, spec: JobSpec) -> None:
        with self._lock:
            self._cache.pop(spec.job_id, None)
        batchfiles.remove_parts(spec.parts)
