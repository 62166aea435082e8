"""Journal appends are atomic with respect to write failures; an fsync failure is fatal."""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.logger.core.journal import Journal
from services.logger.errors import JournalError, JournalWriteFailed


def _payloads(n: int, start: int = 0, size: int = 200) -> list[bytes]:
    return [f"{i:08d}".encode() * (size // 8) for i in range(start, start + n)]


@contextlib.contextmanager
def _file_size_limit(limit_bytes: int) -> Iterator[None]:
    """A real write failure part-way through: RLIMIT_FSIZE makes write() stop at `limit_bytes` (EFBIG)."""
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, old_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


def test_a_write_that_fails_part_way_leaves_nothing_behind(tmp_path: Path) -> None:
    j = Journal(tmp_path, segment_bytes=1 << 20)
    j.open()
    assert j.append(_payloads(10)) == (0, 10)
    segment = next(tmp_path.glob("*.seg"))
    durable = segment.stat().st_size
    with _file_size_limit(durable + 300), pytest.raises(JournalWriteFailed):
        j.append(_payloads(10, 10))  # ~2 KB: the first ~300 bytes land, then EFBIG
    assert segment.stat().st_size == durable  # the torn part was cut off again
    assert j.end_offset == 10 and j.failed is None
    assert j.append(_payloads(10, 20)) == (10, 20)  # the next batch goes right after the durable ones
    reader = j.reader(0)
    assert reader.read(100) == _payloads(10) + _payloads(10, 20)  # the live reader never sees garbage
    j.close()

    reopened = Journal(tmp_path, segment_bytes=1 << 20)
    reopened.open()  # nothing to truncate, nothing lost
    assert (reopened.committed_offset, reopened.end_offset) == (0, 20)
    assert reopened.read(0, 100) == _payloads(10) + _payloads(10, 20)
    reopened.close()


def test_an_fsync_failure_is_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    j = Journal(tmp_path)
    j.open()
    j.append(_payloads(3))

    def failing_fdatasync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing_fdatasync)
    with pytest.raises(JournalError):
        j.append(_payloads(1, 3))
    monkeypatch.undo()
    assert j.failed is not None and "fsync" in j.failed
    with pytest.raises(JournalError, match="restart the logger"):
        j.append(_payloads(1, 4))  # even though fsync works again: what is on disk is unknown
    j.close()
