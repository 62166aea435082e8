"""Files of a batch scoring job: one chunk/checkpoint/output mechanism for the CLI and the gateway.

A job's input (Parquet, or CSV by the `.csv` suffix) is cut into chunks of `chunk_rows` rows
(`chunk_bounds`). Each scored chunk becomes a part file `chunk-NNNNNN.parquet` in a parts
directory, written whole or not at all (`write_atomic`): a part file is the chunk's checkpoint,
and a chunk written again (a resumed job) replaces its part, so no row is ever in the output
twice. `join_parts` concatenates the parts in chunk order into the output: exactly one output row
per input row, columns `OUTPUT_COLUMNS` (a failed row has an error and no score).

Locations are local paths or URLs: `file://`, and whatever `pyarrow.fs` knows (`s3://`, `gs://`,
`hdfs://`...), else an fsspec filesystem (`memory://`, or any installed fsspec driver). Which
locations a *server* may touch is its own policy, checked before anything here is called.

Blocking (file I/O, CPU): call from a thread in async code. Stateless, thread-safe.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

Row = dict[str, Any]
# One result per input row: {"score", "label", "version", "degraded", "error"} (error = no score).
Result = Mapping[str, Any]
OUTPUT_COLUMNS = ("row", "entity_id", "score", "label", "version", "degraded", "error")
FORMATS = (".parquet", ".csv")


def output_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("row", pa.int64()),
            ("entity_id", pa.string()),
            ("score", pa.float64()),
            ("label", pa.string()),
            ("version", pa.string()),
            ("degraded", pa.bool_()),
            ("error", pa.string()),
        ]
    )


def is_csv(location: str) -> bool:
    return _path_part(location).lower().endswith(".csv")


def has_known_format(location: str) -> bool:
    return _path_part(location).lower().endswith(FORMATS)


def _path_part(location: str) -> str:
    parts = urlsplit(location)
    return parts.path if len(parts.scheme) > 1 else location


def filesystem(location: str) -> tuple[Any, str]:
    """(pyarrow FileSystem, path in it) of a local path or URL; ValueError for an unusable URL."""
    import pyarrow.fs as pafs

    scheme = urlsplit(location).scheme
    if len(scheme) <= 1:  # a local path (a one-letter scheme would be a Windows drive)
        return pafs.LocalFileSystem(), os.path.abspath(location)
    if scheme == "file":
        return pafs.LocalFileSystem(), urlsplit(location).path
    try:
        return pafs.FileSystem.from_uri(location)  # type: ignore[no-any-return]
    except (ValueError, NotImplementedError):  # ArrowInvalid: a scheme pyarrow does not know
        pass
    try:
        import fsspec
    except ImportError:
        raise ValueError(f"no filesystem for {scheme}:// (install fsspec and its {scheme} driver)") from None
    try:
        fs, path = fsspec.core.url_to_fs(location)
    except (ImportError, ValueError) as err:
        raise ValueError(f"no filesystem for {scheme}://: {err}") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def exists(location: str) -> bool:
    import pyarrow.fs as pafs

    fs, path = filesystem(location)
    return bool(fs.get_file_info(path).type == pafs.FileType.File)


def read_table(location: str) -> Any:
    """The whole input table; FileNotFoundError when it is not there."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    fs, path = filesystem(location)
    if not exists(location):
        raise FileNotFoundError(location)
    if is_csv(location):
        with fs.open_input_stream(path) as stream:
            return pacsv.read_csv(stream)
    return pq.read_table(path, filesystem=fs)


def count_rows(location: str) -> tuple[int, list[str]]:
    """(rows, column names) of an input file: Parquet from its footer, CSV by reading it."""
    import pyarrow.parquet as pq

    if is_csv(location):
        table = read_table(location)
        return table.num_rows, list(table.column_names)
    fs, path = filesystem(location)
    if not exists(location):
        raise FileNotFoundError(location)
    with fs.open_input_file(path) as f:
        meta = pq.ParquetFile(f).metadata
        return meta.num_rows, list(meta.schema.names)


def chunk_count(total: int, chunk_rows: int) -> int:
    return (total + chunk_rows - 1) // chunk_rows


def chunk_bounds(total: int, chunk_rows: int, index: int) -> tuple[int, int]:
    """(first row, rows) of chunk `index`."""
    start = index * chunk_rows
    return start, max(0, min(chunk_rows, total - start))


def part_location(parts: str, index: int) -> str:
    return f"{parts.rstrip('/')}/chunk-{index:06d}.parquet"


def row_context(row: Mapping[str, Any], entity_column: str) -> dict[str, float | str | bool]:
    """A row's request context: every column but the entity one; numbers as floats, nulls left out."""
    out: dict[str, float | str | bool] = {}
    for name, value in row.items():
        if name == entity_column or value is None:
            continue
        out[name] = value if isinstance(value, bool | str) else float(value)
    return out


class TableRows(Sequence[Row]):
    """The rows of an Arrow table as dicts, converted only when asked, a slice at a time.

    Turning a whole chunk into Python dicts at once holds the GIL for tens to hundreds of
    milliseconds (4,096 rows): a server's event loop stalls that long. Sliced as each call needs
    it, the conversion is spread in small steps between other work. Immutable; thread-safe."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            begin, end, step = index.indices(len(self))
            if step != 1:
                raise ValueError("TableRows slices have step 1")
            return self.table.slice(begin, max(0, end - begin)).to_pylist()
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.table.slice(index, 1).to_pylist()[0]

    def entity_ids(self, entity_column: str) -> Any:
        """The entity column as an Arrow string array (no Python objects)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        return pc.cast(self.table.column(entity_column), pa.string()).combine_chunks()


def chunk_table(start: int, rows: Sequence[Row], results: Sequence[Result], entity_column: str) -> Any:
    """The output rows of one chunk (first row number `start`)."""
    import pyarrow as pa

    if len(results) != len(rows):
        raise RuntimeError(f"scorer answered {len(results)} results for {len(rows)} rows")
    if isinstance(rows, TableRows):
        entities = rows.entity_ids(entity_column)
    else:
        entities = [str(r.get(entity_column, "")) for r in rows]
    out = {
        "row": pa.array(range(start, start + len(rows)), pa.int64()),
        "entity_id": entities,
        "score": [r.get("score") for r in results],
        "label": [r.get("label", "") for r in results],
        "version": [r.get("version", "") for r in results],
        "degraded": [bool(r.get("degraded", False)) for r in results],
        "error": [r.get("error", "") for r in results],
    }
    return pa.table(out, schema=output_schema())


def make_dirs(location: str) -> None:
    fs, path = filesystem(location)
    fs.create_dir(path, recursive=True)


def write_atomic(table: Any, location: str) -> None:
    """Write `table` (CSV by suffix, else Parquet) so that readers see all of it or nothing: a local
    file through a temporary file, fsync and rename; an object store's single PUT is atomic already."""
    import pyarrow.csv as pacsv
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    fs, path = filesystem(location)
    local = isinstance(fs, pafs.LocalFileSystem)
    target = f"{path}.{uuid.uuid4().hex[:8]}.tmp" if local else path  # unique: two writers never share one
    if is_csv(location):
        with fs.open_output_stream(target) as stream:
            pacsv.write_csv(table, stream)
    else:
        pq.write_table(table, target, filesystem=fs)
    if local:
        with open(target, "rb") as f:
            os.fsync(f.fileno())
        os.replace(target, path)


def remove_parts(parts: str) -> None:
    """Delete a parts directory and everything in it (nothing when it is not there), then its parent
    when that is left empty (`<out>.parts/` of the server-side jobs)."""
    import pyarrow.fs as pafs

    fs, path = filesystem(parts)
    if fs.get_file_info(path).type == pafs.FileType.Directory:
        fs.delete_dir(path)
    parent = path.rstrip("/").rpartition("/")[0]
    if parent and parent.endswith(".parts") and fs.get_file_info(parent).type == pafs.FileType.Directory:
        if not fs.get_file_info(pafs.FileSelector(parent)):
            try:
                fs.delete_dir(parent)
            except OSError:  # another job's part appeared meanwhile: leave it
                pass


def join_parts(parts: str, chunks: int, output: str) -> tuple[int, list[str]]:
    """Concatenate the `chunks` part files in order into `output`; (rows, errors of failed rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, _ = filesystem(parts)
    pieces = []
    for index in range(chunks):
        _, path = filesystem(part_location(parts, index))
        pieces.append(pq.read_table(path, filesystem=fs))
    joined = pa.concat_tables(pieces) if pieces else output_schema().empty_table()
    joined = joined.select(list(OUTPUT_COLUMNS))
    write_atomic(joined, output)
    return joined.num_rows, [e for e in joined.column("error").to_pylist() if e]
