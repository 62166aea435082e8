"""Live routing updates from a YAML file (a Helm-rendered ConfigMap mounted as a volume).

`RoutingFileWatcher` is a `predmesh.common.filewatch.FileWatcher` over the routing file (kubelet
swaps ConfigMap volumes by symlink, so the file is hashed every `interval_s` instead of watched
with inotify). A change that parses and validates replaces the predictor's table atomically; an
invalid change is logged, counted and ignored, so the last good table keeps serving. File reads
and parsing run in a thread.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import yaml

from predmesh.common.filewatch import FileWatcher
from services.gateway.core.routing import RoutingError, RoutingTable, parse_routing

log = logging.getLogger(__name__)


def parse_routing_bytes(raw: bytes, source: Path) -> RoutingTable:
    """Parse and validate a routing file's contents; its revision is a hash of the bytes."""
    revision = hashlib.sha256(raw).hexdigest()[:12]
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise RoutingError(f"{source}: not valid YAML: {err}") from err
    return parse_routing(data, revision)


class RoutingFileWatcher:
    """Owns one background task; `start()` loads first (an invalid file at start-up is an error),
    `stop()` cancels. `on_result` hears "applied", "rejected" or "unreadable" per change."""

    def __init__(
        self,
        path: Path,
        apply: Callable[[RoutingTable], None],
        interval_s: float = 0.5,
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        self._apply = apply
        self.revision = ""  # of the table in force
        self._files = FileWatcher(
            [path],
            lambda contents: parse_routing_bytes(contents[0], path),
            self._install,
            interval_s,
            name=f"routing file {path}",
            on_result=on_result,
        )

    def _install(self, table: RoutingTable) -> None:
        self._apply(table)
        self.revision = table.revision
        log.info("routing revision %s applied (%d models)", table.revision, len(table.routes))

    async def start(self) -> None:
        await self._files.start()

    async def check_now(self) -> bool:
        """Re-read the file; True when a new revision was applied."""
        return await self._files.check_now()

    async def stop(self) -> None:
        await self._files.stop()
