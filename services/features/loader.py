"""Bulk-load stored features into Redis from a data frame, CSV or Parquet file.

Every column other than `entity_id` must be a registered *store* feature of the
entity type; ids and values are validated against the registry before anything is
written (a bad file writes nothing). Null cells are left out of the hash (read back
as missing). Each entity is replaced by one server-side script (DEL + HSET, atomic
per entity), so readers never see a half-written entity and an entity's old fields
never linger; a chunk of entities goes in one non-transactional pipeline. The same
code writes to a single Redis or to a Redis Cluster (`redis+cluster://` URL): there
the pipeline is split per master and each entity (one key, one slot) stays atomic.
Each written hash gets the reserved event-time field
(`@event_time_ms`, see core/store.py): the load time, unless `event_time_ms` is given (the
time the file's values were true). A load replaces entities wholesale: it does not compare
event times with what the streaming ingestion wrote (run loads before streaming starts, or
pass the snapshot's own time so that newer streamed events still win afterwards).

These functions block (sync Redis client, file reads): from async code call them
through `asyncio.to_thread`. Command line:

    python -m services.features.loader --redis-url URL --entity-type user --registry PATH FILE

(The demo users are loaded by the tooling: `predmesh features load --demo N`, `predmesh.demo.load`.)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import redis

from predmesh.featurestore import redis_client
from predmesh.featurestore.layout import EVENT_TIME_FIELD, entity_key
from predmesh.featurestore.registry import Registry, load_registry
from predmesh.featurestore.spec import Source
from predmesh.featurestore.values import encode
from services.features.errors import LoadError

log = logging.getLogger(__name__)

ENTITY_ID = "entity_id"
DEFAULT_CHUNK_SIZE = 500
MAX_ENTITY_ID_LENGTH = 256
# KEYS[1] = the entity hash; ARGV = field, value, field, value... (none: the entity is deleted).
_REPLACE_SCRIPT = "redis.call('DEL', KEYS[1]) if #ARGV > 0 then redis.call('HSET', KEYS[1], unpack(ARGV)) end"
_MAX_EXAMPLES = 5


@dataclass(frozen=True, slots=True)
class LoadReport:
    entity_type: str
    entities: int  # entities (hashes) replaced
    fields: int  # hash fields written
    nulls: int  # null cells left out (read back as missing)
    columns: tuple[str, ...]  # feature columns loaded
    seconds: float

    def summary(self) -> str:
        return (
            f"loaded {self.entities} {self.entity_type} entities ({self.fields} fields, {self.nulls} nulls,"
            f" columns: {', '.join(self.columns)}) in {self.seconds:.2f}s"
        )


def _as_registry(registry: Registry | str | Path) -> Registry:
    return registry if isinstance(registry, Registry) else load_registry(registry)


def _encode_frame(
    frame: pd.DataFrame, entity_type: str, registry: Registry
) -> tuple[list[str], list[dict[str, str]], int]:
    group = registry.group(entity_type)
    if ENTITY_ID not in frame.columns:
        if frame.index.name == ENTITY_ID:
            frame = frame.reset_index()
        else:
            raise LoadError(f"column {ENTITY_ID!r} is required (as a column or as the index name)")
    columns = [str(c) for c in frame.columns if c != ENTITY_ID]
    unknown = [c for c in columns if c not in group]
    if unknown:
        raise LoadError(
            f"unknown columns for entity type {entity_type!r}: {unknown}"
            f" (registered store features: {[s.name for s in group.store_features]})"
        )
    request_only = [c for c in columns if (spec := group.get(c)) is not None and spec.source is not Source.STORE]
    if request_only:
        raise LoadError(f"columns {request_only} are request-sourced features and are never stored")
    if not columns:
        raise LoadError("no feature columns to load")

    ids = ["" if pd.isna(v) else str(v) for v in frame[ENTITY_ID].tolist()]
    bad_ids = [i for i, v in enumerate(ids) if not v or len(v) > MAX_ENTITY_ID_LENGTH]
    if bad_ids:
        raise LoadError(f"empty or over-long ({MAX_ENTITY_ID_LENGTH}+) entity ids in rows {bad_ids[:_MAX_EXAMPLES]}")
    duplicated = frame[ENTITY_ID].astype(str).duplicated()
    if duplicated.any():
        raise LoadError(
            f"duplicate entity ids: {sorted(set(frame[ENTITY_ID].astype(str)[duplicated]))[:_MAX_EXAMPLES]}"
        )

    rows: list[dict[str, str]] = [{} for _ in ids]
    nulls = 0
    errors: list[str] = []
    for column in columns:
        spec = group.get(column)
        assert spec is not None
        for row, cell in enumerate(frame[column].tolist()):
            if cell is None or (pd.api.types.is_scalar(cell) and not isinstance(cell, str) and pd.isna(cell)):
                nulls += 1
                continue
            text = encode(spec, cell)
            if text is None:
                if len(errors) < _MAX_EXAMPLES:
                    errors.append(f"row {row} ({ids[row]}) {column}={cell!r}")
                else:
                    errors.append("")
                continue
            rows[row][column] = text
    if errors:
        shown = "; ".join(e for e in errors if e)
        raise LoadError(f"{len(errors)} invalid values (dtype, min/max or categories), e.g. {shown}")
    return ids, rows, nulls


def load_frame(
    frame: pd.DataFrame,
    entity_type: str,
    redis_url: str,
    registry: Registry | str | Path,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    event_time_ms: int | None = None,
) -> LoadReport:
    """Validate `frame` against `registry` (a Registry or its YAML path) and replace its entities' hashes.

    Every written hash records `event_time_ms` (Unix ms; default: now) as its event time.
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    started = time.monotonic()
    stamp = str(int(time.time() * 1000) if event_time_ms is None else int(event_time_ms))
    reg = _as_registry(registry)
    ids, rows, nulls = _encode_frame(frame, entity_type, reg)
    client = redis_client.sync_client(redis_client.parse_target(redis_url))
    try:
        for start in range(0, len(ids), chunk_size):
            with client.pipeline(transaction=False) as pipe:
                for entity_id, fields in zip(
                    ids[start : start + chunk_size], rows[start : start + chunk_size], strict=True
                ):
                    args = [part for item in fields.items() for part in item]
                    if args:
                        args += [EVENT_TIME_FIELD, stamp]
                    # execute_command: the cluster pipeline has no eval() of its own (it routes EVAL by KEYS[1]).
                    pipe.execute_command("EVAL", _REPLACE_SCRIPT, 1, entity_key(entity_type, entity_id), *args)
                pipe.execute()
    finally:
        client.close()
    report = LoadReport(
        entity_type=entity_type,
        entities=len(ids),
        fields=sum(len(r) for r in rows),
        nulls=nulls,
        columns=tuple(str(c) for c in frame.columns if c != ENTITY_ID),
        seconds=time.monotonic() - started,
    )
    log.info("%s", report.summary())
    return report


def read_file(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file; `entity_id` is always read as text."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        # Only empty cells are nulls (so a category such as "NA" stays a string).
        return pd.read_csv(path, dtype={ENTITY_ID: str}, keep_default_na=False, na_values=[""])
    if suffix in (".parquet", ".pq"):
        try:
            import pyarrow.parquet  # noqa: F401 - pandas' own ImportError hides the reason
        except ImportError as err:
            raise LoadError(f"{path}: Parquet needs a working pyarrow: {err}") from err
        return pd.read_parquet(path)
    raise LoadError(f"{path}: unsupported file type {suffix!r} (use .csv or .parquet)")


def load_file(
    path: str | Path,
    entity_type: str,
    redis_url: str,
    registry: Registry | str | Path,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> LoadReport:
    """Load a CSV or Parquet file with an `entity_id` column."""
    try:
        frame = read_file(path)
    except (OSError, ValueError) as err:
        if isinstance(err, LoadError):
            raise
        raise LoadError(f"{path}: cannot read: {err}") from err
    return load_frame(frame, entity_type, redis_url, registry, chunk_size)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.features.loader", description="Load stored features into Redis."
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("PREDMESH_FEATURES_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="Redis URL, redis+cluster://HOST:PORT for a Redis Cluster"
        " (default: $PREDMESH_FEATURES_REDIS_URL or redis://127.0.0.1:6379/0)",
    )
    parser.add_argument("--entity-type", default="user", help="entity type of the rows (default: user)")
    parser.add_argument("--registry", type=Path, required=True, help="feature registry YAML")
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE, help="entities per transaction")
    parser.add_argument("file", type=Path, help="CSV or Parquet file with an entity_id column")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns 0 on success, 1 when the load failed, 2 on bad usage."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = load_file(args.file, args.entity_type, args.redis_url, args.registry, args.chunk_size)
    except (LoadError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except redis.RedisError as err:
        print(f"error: redis at {args.redis_url}: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # PredmeshError (e.g. unknown entity type) and anything else
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
