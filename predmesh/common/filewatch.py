"""Re-read small files (mounted Secrets, certificates, key tables) when their content changes.

Kubernetes swaps Secret and ConfigMap volumes by renaming a `..data` symlink, so inotify on
the file is unreliable and mtimes can repeat; `FileWatcher` hashes the bytes of each watched
path every `interval_s` instead (the files are a few KiB). When any of them changed, `load`
runs on all current contents and its result goes to `apply`. A failing `load` (a half-written
file, a bad certificate) is logged and ignored: the last good value keeps serving, and the
same bad content is reported once. After start, a file that reads empty (or whitespace) is
rejected the same way without calling `load`: that is what a reader sees between a non-atomic
writer's truncate and write, and applying it would drop every route or revoke every key. To
clear a table on purpose, write an explicit empty document (`{}`, `models: {}`).

Lifecycle: `await start()` loads once (a failure there raises: a service must not start on
a bad file) and begins polling; `await stop()` cancels the poll task. File reads and `load`
run in a worker thread; `apply` runs on the event loop. `on_result`, when given, hears every
outcome: "applied", "rejected" (load failed) or "unreadable" (a read failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def read_all(paths: Sequence[Path]) -> tuple[list[bytes], str]:
    """Contents of `paths` and one digest over them (blocking)."""
    contents = [p.read_bytes() for p in paths]
    digest = hashlib.sha256(b"\0".join(hashlib.sha256(c).digest() for c in contents)).hexdigest()
    return contents, digest


class FileWatcher(Generic[T]):
    """Polls `paths`; on change, `apply(load(contents))`. One background task."""

    def __init__(
        self,
        paths: Sequence[Path],
        load: Callable[[list[bytes]], T],
        apply: Callable[[T], None],
        interval_s: float = 1.0,
        name: str = "file",
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        self._paths = list(paths)
        self._load = load
        self._apply = apply
        self._interval_s = interval_s
        self._name = name
        self._on_result = on_result or (lambda _: None)
        self._task: asyncio.Task[None] | None = None
        self.digest = ""
        self.reloads = 0
        self.rejected = 0

    def _read_and_load(self) -> tuple[T, str]:
        contents, digest = read_all(self._paths)
        return self._load(contents), digest

    async def start(self) -> None:
        value, self.digest = await asyncio.to_thread(self._read_and_load)
        self._install(value)
        if self._interval_s > 0:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def check_now(self) -> bool:
        """Re-read the files; True when new content was loaded and applied."""
        try:
            contents, digest = await asyncio.to_thread(read_all, self._paths)
        except OSError as err:
            self._on_result("unreadable")
            log.warning("%s unreadable, keeping the last good one: %s", self._name, err)
            return False
        if digest == self.digest:
            return False
        self.digest = digest  # a bad version is reported once, not every interval
        try:
            if any(not c.strip() for c in contents):
                raise ValueError("a watched file is empty (half-written?)")
            value = await asyncio.to_thread(self._load, contents)
        except Exception as err:
            self.rejected += 1
            self._on_result("rejected")
            log.error("%s changed but is invalid, keeping the last good one: %s", self._name, err)
            return False
        self._install(value)
        self.reloads += 1
        log.info("%s reloaded", self._name)
        return True

    def _install(self, value: T) -> None:
        self._apply(value)
        self._on_result("applied")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.check_now()
            except Exception:  # the watcher must survive anything
                log.exception("%s watcher iteration failed", self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
