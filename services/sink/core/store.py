"""The analytics store interface: ClickHouse SQL in, Python rows out.

Two implementations run the same schema and SQL: `services.sink.backends.chdb_store.ChdbStore`
(the ClickHouse engine in process, state under a directory; the local default) and
`services.sink.backends.clickhouse_store.ClickHouseStore` (a ClickHouse server through
clickhouse-connect; Kubernetes). Methods block (call them from a thread in async code) and
are safe to call from several threads. Failures raise StoreUnavailable (retry) or QueryFailed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from services.sink.errors import InvalidArgument


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


class AnalyticsStore(Protocol):
    database: str

    def command(self, sql: str) -> None:
        """Run a statement that returns nothing (DDL)."""
        ...

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert rows into `<database>.<table>` in one batch."""
        ...

    def query(self, sql: str) -> QueryResult:
        """Run a SELECT and return its columns and rows."""
        ...

    def close(self) -> None: ...


_READ_ONLY = re.compile(r"^\s*(select|with|show|describe|desc|explain|exists)\b", re.IGNORECASE)


def check_read_only(sql: str, max_chars: int = 100_000) -> str:
    """The statement of an ad-hoc query when it is one read-only statement; else InvalidArgument."""
    text = sql.strip().rstrip(";").strip()
    if not text:
        raise InvalidArgument("sql is empty")
    if len(text) > max_chars:
        raise InvalidArgument(f"sql longer than {max_chars} characters")
    if ";" in text:
        raise InvalidArgument("one statement per query")
    if not _READ_ONLY.match(text):
        raise InvalidArgument("only read-only statements (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS)")
    return text


def quote(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
