"""A ClickHouse server through clickhouse-connect (HTTP): the analytics store in Kubernetes.

Same schema and SQL as the embedded store. clickhouse-connect's client is not thread-safe,
so calls hold a lock (the sink's traffic is a few batched inserts and queries per second).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from services.sink.core.store import QueryResult
from services.sink.errors import QueryFailed, StoreUnavailable

TIME_COLUMNS = frozenset({"ts", "inserted", "event_time"})


class ClickHouseStore:
    def __init__(self, url: str, username: str = "default", password: str = "", database: str = "predmesh") -> None:
        import clickhouse_connect
        from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

        self._errors = (DatabaseError, OperationalError)
        self.database = database
        self._lock = threading.Lock()
        try:
            self._client = clickhouse_connect.get_client(dsn=url, username=username, password=password)
        except OperationalError as err:
            raise StoreUnavailable(f"ClickHouse unreachable: {type(err).__name__}") from err

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from clickhouse_connect.driver.exceptions import OperationalError

        with self._lock:
            try:
                return fn(*args, **kwargs)
            except OperationalError as err:
                raise StoreUnavailable(f"ClickHouse unavailable: {type(err).__name__}") from err
            except self._errors as err:
                raise QueryFailed(str(err).strip().splitlines()[0][:500]) from err

    def command(self, sql: str) -> None:
        self._call(self._client.command, sql)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        times = [i for i, c in enumerate(columns) if c in TIME_COLUMNS]  # unix seconds -> datetime
        data = [
            [datetime.fromtimestamp(v, UTC) if i in times and isinstance(v, float) else v for i, v in enumerate(row)]
            for row in rows
        ]
        self._call(self._client.insert, f"{self.database}.{table}", data, column_names=list(columns))

    def query(self, sql: str) -> QueryResult:
        result = self._call(self._client.query, sql)
        return QueryResult(tuple(result.column_names), [tuple(r) for r in result.result_rows])

    def close(self) -> None:
        with self._lock:
            self._client.close()
