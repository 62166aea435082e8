"""ClickHouse in process (PyPI `chdb`): the local analytics store, state under `path`.

One chdb session per process (chdb keeps global engine state); every call holds a lock, so
the consumer thread, the rollout controller and the Query RPC take turns. Rows are inserted
as JSONCompactEachRow text (one statement per batch).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from services.sink.core.store import QueryResult
from services.sink.errors import QueryFailed


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class ChdbStore:
    def __init__(self, path: Path, database: str = "predmesh") -> None:
        from chdb import session  # imported here: ~0.5 GB engine, only where the store is used

        path.mkdir(parents=True, exist_ok=True)
        self.database = database
        self._lock = threading.Lock()
        self._session = session.Session(str(path))

    def _run(self, sql: str, fmt: str = "CSV") -> Any:
        with self._lock:
            try:
                result = self._session.query(sql, fmt)
            except Exception as err:  # chdb raises RuntimeError carrying ClickHouse's message
                raise QueryFailed(str(err).strip().splitlines()[0][:500]) from err
        if getattr(result, "has_error", lambda: False)():
            raise QueryFailed(result.error_message()[:500])
        return result

    def command(self, sql: str) -> None:
        self._run(sql)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
        try:
            body = "\n".join(dumps(list(row)) for row in rows)
        except ValueError:  # NaN / inf (not JSON): null, row by row
            body = "\n".join(dumps([_jsonable(v) for v in row]) for row in rows)
        self._run(f"INSERT INTO {self.database}.{table} ({', '.join(columns)}) FORMAT JSONCompactEachRow\n{body}")

    def query(self, sql: str) -> QueryResult:
        result = self._run(sql, "JSONCompact")
        raw = result.bytes()
        if not raw:
            return QueryResult((), [])
        doc = json.loads(raw)
        return QueryResult(tuple(m["name"] for m in doc["meta"]), [tuple(r) for r in doc["data"]])

    def close(self) -> None:
        with self._lock:
            self._session.close()
