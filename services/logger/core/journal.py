"""Append-only on-disk journal of serialized events.

Layout of `directory`:
  - `<base offset, 20 digits>.seg`: segment files. A record is
    `u32 big-endian length | u32 big-endian CRC32(payload) | payload`.
    Record offsets are global and monotonic across segments and restarts.
  - `committed`: the checkpoint, the lowest offset NOT yet confirmed by Kafka
    (written to a temp file, fsynced, renamed).

Durability: `append()` writes and fsyncs before returning, so a record returned by it
survives a crash. Appends are atomic with respect to failures: when a write fails part-way
(ENOSPC, EIO) the segment is truncated back to its last durable size and the whole batch
is refused (`JournalWriteFailed`, retryable); nothing of it is ever read or replayed. An
fsync failure is fatal (as in PostgreSQL and Kafka: after a failed fsync the kernel may
have dropped the dirty pages, so what is on disk is unknown): the journal refuses every
later append (`failed` says why) until the process restarts and re-scans its segments.
`commit()` only moves the in-memory committed offset;
`persist_checkpoint()` writes it and deletes segments that are fully committed. A crash
between delivery and checkpoint replays the tail again (at-least-once).

On open, segments are scanned: a torn or CRC-failing tail of the LAST segment (a crash
mid-append, never acknowledged) is truncated; a bad record in an older, sealed segment
raises `JournalCorrupt`.

Threading: one writer thread calls `append()`; any other thread may use `read()`,
`commit()`, `persist_checkpoint()` and the read-only properties. Shared state is
guarded by one lock that is never held during file I/O on the append path.
"""

from __future__ import annotations

import bisect
import logging
import os
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

from services.logger.errors import JournalCorrupt, JournalError, JournalWriteFailed

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">II")
_SUFFIX = ".seg"
_CHECKPOINT = "committed"
_READ_CHUNK = 1 << 20


@dataclass
class _Segment:
    base: int
    path: Path
    count: int = 0  # durable records
    size: int = 0  # durable bytes

    @property
    def end(self) -> int:
        return self.base + self.count


def _segment_path(directory: Path, base: int) -> Path:
    return directory / f"{base:020d}{_SUFFIX}"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def encode_records(payloads: list[bytes]) -> bytes:
    """Frame `payloads` as journal records."""
    parts: list[bytes] = []
    for p in payloads:
        parts.append(_HEADER.pack(len(p), zlib.crc32(p)))
        parts.append(p)
    return b"".join(parts)


def _scan(data: bytes, start: int = 0, limit: int | None = None) -> tuple[list[bytes], int, bool]:
    """Parse records from `data[start:]`; returns (payloads, end position, clean).

    `clean` is False when parsing stopped at a CRC mismatch; a short tail just stops.
    """
    out: list[bytes] = []
    pos = start
    n = len(data)
    hsize = _HEADER.size
    while pos + hsize <= n and (limit is None or len(out) < limit):
        length, crc = _HEADER.unpack_from(data, pos)
        end = pos + hsize + length
        if end > n:
            break
        payload = data[pos + hsize : end]
        if zlib.crc32(payload) != crc:
            return out, pos, False
        out.append(payload)
        pos = end
    return out, pos, True


class Journal:
    """Segmented, CRC-checked, fsynced record log with a committed-offset checkpoint."""

    def __init__(self, directory: Path, segment_bytes: int = 64 * 1024 * 1024) -> None:
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._segments: list[_Segment] = []
        self._committed = 0
        self._persisted = -1
        self._file: object | None = None
        self._opened = False
        self.failed: str | None = None  # set after an fsync failure or a failed truncate: no more appends

    # -- lifecycle -----------------------------------------------------------
    def open(self) -> None:
        """Recover state from disk (blocking I/O: call from a thread)."""
        try:
            self._open()
        except OSError as err:
            raise JournalError(f"cannot open journal at {self.directory}: {err}") from err

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        ckpt = self.directory / _CHECKPOINT
        committed = int(ckpt.read_text().strip() or 0) if ckpt.exists() else 0
        paths = sorted(p for p in self.directory.iterdir() if p.suffix == _SUFFIX)
        segments: list[_Segment] = []
        for i, path in enumerate(paths):
            seg = _Segment(base=int(path.stem), path=path)
            data = path.read_bytes()
            payloads, end, clean = _scan(data)
            last = i == len(paths) - 1
            if (not clean or end != len(data)) and not last:
                raise JournalCorrupt(f"journal segment {path.name} is damaged at byte {end}")
            if end != len(data):
                log.warning(
                    "journal: truncating torn tail of %s at byte %d (%d bytes dropped, never acknowledged)",
                    path.name,
                    end,
                    len(data) - end,
                )
                with open(path, "r+b") as f:
                    f.truncate(end)
                    os.fsync(f.fileno())
            seg.count, seg.size = len(payloads), end
            segments.append(seg)
        # Segments fully below the checkpoint were delivered: remove leftovers of an interrupted cleanup.
        while len(segments) > 1 and segments[0].end <= committed:
            segments.pop(0).path.unlink(missing_ok=True)
        end_offset = segments[-1].end if segments else committed
        if segments:
            committed = max(committed, segments[0].base)
        committed = min(committed, end_offset)
        if not segments or segments[-1].count > 0:
            seg = _Segment(base=end_offset, path=_segment_path(self.directory, end_offset))
            seg.path.touch()
            _fsync_dir(self.directory)
            segments.append(seg)
        self._segments = segments
        self._committed = committed
        self._persisted = committed
        self._file = open(segments[-1].path, "ab", buffering=0)
        self._opened = True
        log.info(
            "journal opened at %s: offsets %d..%d, %d pending delivery",
            self.directory,
            committed,
            end_offset,
            end_offset - committed,
        )

    def close(self) -> None:
        if self._file is not None:
            self._file.close()  # type: ignore[attr-defined]
            self._file = None
        self._opened = False

    # -- state ---------------------------------------------------------------
    @property
    def end_offset(self) -> int:
        """Offset the next appended record gets (everything below is durable)."""
        with self._lock:
            return self._segments[-1].end if self._segments else self._committed

    @property
    def committed_offset(self) -> int:
        with self._lock:
            return self._committed

    @property
    def backlog(self) -> int:
        """Durable records not yet confirmed by Kafka."""
        with self._lock:
            return (self._segments[-1].end if self._segments else self._committed) - self._committed

    def backlog_bytes(self) -> int:
        """Approximate bytes of segments holding unconfirmed records."""
        with self._lock:
            return sum(s.size for s in self._segments if s.end > self._committed)

    # -- writing (single writer thread) -----------------------------------------
    def append(self, payloads: list[bytes]) -> tuple[int, int]:
        """Append and fsync `payloads` as one unit; returns the [first, end) offsets. Blocking.

        Raises `JournalWriteFailed` (nothing appended, retry later) when the write fails, and
        `JournalError` once the journal has failed for good (see the module docstring).
        """
        if self.failed is not None:
            raise JournalError(f"journal failed, restart the logger: {self.failed}")
        if not self._opened or self._file is None:
            raise JournalError("journal is not open")
        if not payloads:
            end = self.end_offset
            return end, end
        data = encode_records(payloads)
        with self._lock:
            seg = self._segments[-1]
        try:
            if seg.size > 0 and seg.size + len(data) > self.segment_bytes:
                seg = self._roll(seg)
            fd = self._file.fileno()  # type: ignore[attr-defined]
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError as err:
            self._undo_partial_write(seg, err)
            raise JournalWriteFailed(f"journal append failed (nothing written): {err}") from err
        try:
            os.fdatasync(fd)
        except OSError as err:
            self.failed = f"fsync of {seg.path.name} failed: {err}"
            log.critical("journal: %s; refusing further appends", self.failed)
            raise JournalError(f"journal failed: {self.failed}") from err
        with self._lock:
            first = seg.end
            seg.count += len(payloads)
            seg.size += len(data)
            return first, seg.end

    def _undo_partial_write(self, seg: _Segment, err: OSError) -> None:
        """Cut the segment back to its durable size so a torn record never sits before later ones."""
        try:
            fd = self._file.fileno()  # type: ignore[union-attr]
            if os.fstat(fd).st_size != seg.size:
                os.ftruncate(fd, seg.size)
                os.fsync(fd)
                log.warning("journal: write failed (%s); %s truncated back to %d bytes", err, seg.path.name, seg.size)
        except (OSError, ValueError) as trunc_err:
            self.failed = f"write to {seg.path.name} failed ({err}) and truncating it back failed ({trunc_err})"
            log.critical("journal: %s; refusing further appends", self.failed)

    def _roll(self, current: _Segment) -> _Segment:
        self._file.close()  # type: ignore[union-attr]
        seg = _Segment(base=current.end, path=_segment_path(self.directory, current.end))
        self._file = open(seg.path, "ab", buffering=0)
        _fsync_dir(self.directory)
        with self._lock:
            self._segments.append(seg)
        return seg

    # -- reading / committing (any thread) --------------------------------------
    def read(self, offset: int, max_records: int) -> list[bytes]:
        """Up to `max_records` durable payloads starting at `offset` (fewer at the end)."""
        return self.reader(offset).read(max_records)

    def reader(self, offset: int) -> JournalReader:
        return JournalReader(self, offset)

    def _locate(self, offset: int) -> _Segment | None:
        with self._lock:
            bases = [s.base for s in self._segments]
            i = bisect.bisect_right(bases, offset) - 1
            if i < 0:
                raise JournalError(f"offset {offset} is below the journal start {bases[0] if bases else 0}")
            seg = self._segments[i]
            if offset >= seg.end and i == len(self._segments) - 1:
                return None
            return seg

    def _next_segment(self, seg: _Segment) -> _Segment | None:
        with self._lock:
            for s in self._segments:
                if s.base > seg.base:
                    return s
            return None

    def _durable(self, seg: _Segment) -> tuple[int, int]:
        with self._lock:
            return seg.count, seg.size

    def commit(self, offset: int) -> None:
        """Mark every record below `offset` as delivered (in memory; see persist_checkpoint)."""
        with self._lock:
            if offset > self._committed:
                self._committed = offset

    def persist_checkpoint(self) -> None:
        """Write the committed offset durably and delete fully delivered sealed segments. Blocking."""
        with self._lock:
            committed = self._committed
            if committed == self._persisted:
                return
            dead = [s for s in self._segments[:-1] if s.end <= committed]
        tmp = self.directory / (_CHECKPOINT + ".tmp")
        with open(tmp, "w") as f:
            f.write(str(committed))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.directory / _CHECKPOINT)
        _fsync_dir(self.directory)
        with self._lock:
            self._persisted = committed
            self._segments = [s for s in self._segments if s not in dead]
        for s in dead:
            s.path.unlink(missing_ok=True)


class JournalReader:
    """Sequential reader from one offset; owned by one thread. Only returns durable records."""

    def __init__(self, journal: Journal, offset: int) -> None:
        self._journal = journal
        self.offset = offset
        self._seg: _Segment | None = None
        self._pos = 0  # byte position of `self.offset` within `self._seg`
        self._seg_index = 0  # record index of `self.offset` within `self._seg`

    def _position(self) -> bool:
        if self._seg is None:
            seg = self._journal._locate(self.offset)
            if seg is None:
                return False
            self._seg, self._pos, self._seg_index = seg, 0, 0
            skip = self.offset - seg.base
            while self._seg_index < skip:
                if not self._read_in_segment(skip - self._seg_index):
                    raise JournalError(f"offset {self.offset} not found in {seg.path.name}")
        return True

    def _read_in_segment(self, max_records: int) -> list[bytes]:
        assert self._seg is not None
        count, size = self._journal._durable(self._seg)
        limit = min(max_records, count - self._seg_index)
        if limit <= 0:
            return []
        with open(self._seg.path, "rb") as f:
            f.seek(self._pos)
            data = f.read(min(size - self._pos, _READ_CHUNK))
            payloads, end, clean = _scan(data, 0, limit)
            if not payloads and clean and len(data) >= _HEADER.size:
                # One record larger than the chunk: read exactly that record.
                length, _ = _HEADER.unpack_from(data, 0)
                f.seek(self._pos)
                payloads, end, clean = _scan(f.read(_HEADER.size + length), 0, 1)
        if not payloads:
            raise JournalCorrupt(f"unreadable record at {self._seg.path.name}:{self._pos}")
        self._pos += end
        self._seg_index += len(payloads)
        return payloads

    def read(self, max_records: int) -> list[bytes]:
        """Next up to `max_records` durable payloads; advances `offset`."""
        out: list[bytes] = []
        while len(out) < max_records:
            if not self._position():
                break
            got = self._read_in_segment(max_records - len(out))
            if got:
                out.extend(got)
                self.offset += len(got)
                continue
            assert self._seg is not None
            nxt = self._journal._next_segment(self._seg)
            if nxt is None or self._seg_index < self._journal._durable(self._seg)[0]:
                break
            self._seg, self._pos, self._seg_index = nxt, 0, 0
        return out
