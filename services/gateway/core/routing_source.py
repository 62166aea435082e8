"""Live routing updates from a YAML file (a Helm-rendered ConfigMap mounted as a volume).

`RoutingFileWatcher` checks the file every `interval_s` (kubelet swaps ConfigMap volumes by
symlink, so inotify on the file is unreliable; hashing a small file is cheap). A change that
parses and validates replaces the predictor's table atomically; an invalid change is logged,
counted and ignored, so the last good table keeps serving. File reads run in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import yaml

from services.gateway.core.routing import RoutingError, RoutingTable, parse_routing

log = logging.getLogger(__name__)


def load_routing_file(path: Path) -> RoutingTable:
    """Parse and validate a routing file (blocking)."""
    raw = path.read_bytes()
    revision = hashlib.sha256(raw).hexdigest()[:12]
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise RoutingError(f"{path}: not valid YAML: {err}") from err
    return parse_routing(data, revision)


class RoutingFileWatcher:
    """Owns one background task; `start()` loads synchronously first, `stop()` cancels."""

    def __init__(
        self,
        path: Path,
        apply: Callable[[RoutingTable], None],
        interval_s: float = 0.5,
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        self._path = path
        self._apply = apply
        self._interval_s = interval_s
        self._on_result = on_result or (lambda _: None)
        self._task: asyncio.Task[None] | None = None
        self.revision = ""

    async def start(self) -> None:
        """Load the file once (an invalid file at start-up is an error) and begin watching."""
        table = await asyncio.to_thread(load_routing_file, self._path)
        self._install(table)
        self._task = asyncio.get_running_loop().create_task(self._watch())

    def _install(self, table: RoutingTable) -> None:
        self._apply(table)
        self.revision = table.revision
        self._on_result("applied")
        log.info("routing revision %s applied (%d models)", table.revision, len(table.routes))

    async def check_now(self) -> bool:
        """Re-read the file; True when a new revision was applied."""
        try:
            raw = await asyncio.to_thread(self._path.read_bytes)
        except OSError as err:
            self._on_result("unreadable")
            log.warning("routing file %s unreadable: %s", self._path, err)
            return False
        if hashlib.sha256(raw).hexdigest()[:12] == self.revision:
            return False
        try:
            table = await asyncio.to_thread(load_routing_file, self._path)
        except (RoutingError, OSError) as err:
            self._on_result("rejected")
            log.error("routing update rejected, keeping revision %s: %s", self.revision, err)
            # Remember the bad revision's hash so it is reported once, not every interval.
            self.revision = hashlib.sha256(raw).hexdigest()[:12]
            return False
        self._install(table)
        return True

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.check_now()
            except Exception:  # the watcher must survive anything
                log.exception("routing watcher iteration failed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
