"""Which model versions a bounded model pool loads at start and never evicts ("eager").

Read from the gateway's routing table (the same YAML document, mounted into the
orchestrator): per model, the versions of its `versions:` arms (stable and canary) are
eager by default; an explicit `eager:` list replaces that default (e.g. `eager: []` to
serve a rarely used model lazily, or `eager: ["1", "2", "3"]` to pin an older version
too). Every other version, and every model the table does not name, is loaded on first
use and may be evicted. `extra` ("name:version" strings, from settings) adds versions.

    models:
      fraud:
        versions:
          - {version: "1", weight: 90}   # eager (stable arm)
          - {version: "2", weight: 10}   # eager (canary arm)
        eager: ["1", "2"]                # optional; this is the default here

The file is re-read when its size or mtime changes (each registration checks it), so a
canary added to the routing table is eager from the next hot reload on. A missing or
invalid file makes nothing eager from it (logged once per change).

Threading: `is_eager` does blocking file I/O; call it off the event loop.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from predmesh.models.registry import ModelVersion

log = logging.getLogger(__name__)


def eager_versions(document: Any) -> set[tuple[str, str]]:
    """(model, version) pairs a routing document marks eager (see module docstring)."""
    out: set[tuple[str, str]] = set()
    models = (document or {}).get("models") if isinstance(document, dict) else None
    if not isinstance(models, dict):
        return out
    for name, route in models.items():
        if not isinstance(route, dict):
            continue
        if "eager" in route:
            listed = route.get("eager") or []
            out.update((str(name), str(v)) for v in listed)
            continue
        for arm in route.get("versions") or []:
            if isinstance(arm, dict) and "version" in arm:
                out.add((str(name), str(arm["version"])))
    return out


class EagerPolicy:
    """`is_eager(mv)` from a routing file plus extra "name:version" entries."""

    def __init__(self, routing_path: Path | None = None, extra: Iterable[str] = ()) -> None:
        self._path = routing_path
        self._extra = {tuple(item.strip().split(":", 1)) for item in extra if ":" in item}
        self._seen: tuple[int, int] | None = None
        self._from_file: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        if self._path is None:
            return
        try:
            st = os.stat(self._path)
            stamp = (st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = (-1, -1)
        if stamp == self._seen:
            return
        self._seen = stamp
        try:
            self._from_file = eager_versions(yaml.safe_load(self._path.read_text()))
        except (OSError, yaml.YAMLError) as err:
            log.warning("routing file %s unreadable, no eager versions from it: %s", self._path, err)
            self._from_file = set()

    def versions(self) -> set[tuple[str, str]]:
        with self._lock:
            self._refresh()
            self.cached = frozenset(self._from_file | {(a, b) for a, b in self._extra})  # type: ignore[misc]
            return set(self.cached)

    cached: frozenset[tuple[str, str]] = frozenset()  # the last `versions()` (no I/O; hot paths read this)

    def is_eager(self, mv: ModelVersion) -> bool:
        return mv.ref in self.versions()
