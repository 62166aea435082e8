"""One embedded ClickHouse store per test module (chdb allows one path per process at a time)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.sink.backends.chdb_store import ChdbStore
from services.sink.core.schema import create_statements


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbStore]:
    s = ChdbStore(tmp_path_factory.mktemp("chdb"), "predmesh")
    for statement in create_statements("predmesh"):
        s.command(statement)
    try:
        yield s
    finally:
        s.close()
