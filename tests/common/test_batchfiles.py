"""predmesh.common.batchfiles: rows of a chunk converted lazily (TableRows) give the same rows and
output as plain dicts; a parts directory is removed with its now-empty `.parts` parent."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from predmesh.common import batchfiles


def test_table_rows_convert_slices_like_to_pylist() -> None:
    table = pa.table({"entity_id": ["a", "b", "c", "d"], "amount": [1.0, 2.0, None, 4.0]})
    rows = batchfiles.TableRows(table.slice(1, 3))
    assert len(rows) == 3
    assert rows[0:2] == [{"entity_id": "b", "amount": 2.0}, {"entity_id": "c", "amount": None}]
    assert rows[2:10] == [{"entity_id": "d", "amount": 4.0}] and rows[3:] == []
    assert rows[-1] == {"entity_id": "d", "amount": 4.0}
    with pytest.raises(IndexError):
        rows[3]
    results = [{"score": 0.1 * i, "label": "x", "version": "2"} for i in range(3)]
    lazy = batchfiles.chunk_table(10, rows, results, "entity_id")
    plain = batchfiles.chunk_table(10, table.slice(1, 3).to_pylist(), results, "entity_id")
    assert lazy.equals(plain)
    assert lazy.column("row").to_pylist() == [10, 11, 12] and lazy.column("entity_id").to_pylist() == ["b", "c", "d"]


def test_numeric_entity_ids_become_strings() -> None:
    rows = batchfiles.TableRows(pa.table({"user": [7, 8]}))
    out = batchfiles.chunk_table(0, rows, [{"score": 0.5}, {"error": "bad"}], "user")
    assert out.column("entity_id").to_pylist() == ["7", "8"]
    assert out.column("error").to_pylist() == ["", "bad"]


def test_remove_parts_deletes_the_job_and_an_empty_parent(tmp_path: Path) -> None:
    parent = tmp_path / "out.parquet.parts"
    for job in ("job-1", "job-2"):
        (parent / job).mkdir(parents=True)
        pq.write_table(pa.table({"x": [1]}), parent / job / "chunk-000000.parquet")
    batchfiles.remove_parts(str(parent / "job-1"))
    assert not (parent / "job-1").exists() and (parent / "job-2" / "chunk-000000.parquet").exists()
    batchfiles.remove_parts(str(parent / "job-2"))
    assert not parent.exists()
    batchfiles.remove_parts(str(parent / "job-3"))  # nothing there: nothing to do
    assert tmp_path.exists()
