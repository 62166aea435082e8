"""Journal: durability framing, recovery of torn tails, segment rolling and cleanup."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.logger.core.journal import Journal
from services.logger.errors import JournalCorrupt


def _open(path: Path, segment_bytes: int = 4096) -> Journal:
    j = Journal(path, segment_bytes=segment_bytes)
    j.open()
    return j


def _payloads(n: int, start: int = 0, size: int = 100) -> list[bytes]:
    return [f"{i:08d}".encode() * (size // 8) for i in range(start, start + n)]


def test_append_read_and_reopen_keeps_offsets(tmp_path: Path) -> None:
    j = _open(tmp_path)
    assert j.append(_payloads(10)) == (0, 10)
    assert j.append(_payloads(5, 10)) == (10, 15)
    assert j.read(0, 100) == _payloads(15)
    assert j.read(12, 2) == _payloads(2, 12)
    j.commit(4)
    j.persist_checkpoint()
    j.close()

    j2 = _open(tmp_path)
    assert (j2.committed_offset, j2.end_offset, j2.backlog) == (4, 15, 11)
    assert j2.read(j2.committed_offset, 100) == _payloads(11, 4)
    assert j2.append(_payloads(1, 15)) == (15, 16)
    j2.close()


def test_segments_roll_and_committed_ones_are_deleted(tmp_path: Path) -> None:
    j = _open(tmp_path, segment_bytes=4096)
    for k in range(10):
        j.append(_payloads(10, k * 10))  # ~1 KiB per append -> several segments
    segments = sorted(tmp_path.glob("*.seg"))
    assert len(segments) >= 3
    reader = j.reader(0)
    got: list[bytes] = []
    while chunk := reader.read(7):
        got.extend(chunk)
    assert got == _payloads(100)
    j.commit(95)
    j.persist_checkpoint()
    assert len(sorted(tmp_path.glob("*.seg"))) < len(segments)
    assert j.read(95, 100) == _payloads(5, 95)
    j.close()
    j2 = _open(tmp_path)
    assert (j2.committed_offset, j2.end_offset) == (95, 100)
    j2.close()


def test_torn_tail_is_truncated_on_open(tmp_path: Path) -> None:
    j = _open(tmp_path)
    j.append(_payloads(3))
    j.close()
    seg = sorted(tmp_path.glob("*.seg"))[-1]
    with open(seg, "ab") as f:
        f.write(b"\x00\x00\x01\x00garbage")  # a crash mid-append (never acknowledged)
    j2 = _open(tmp_path)
    assert j2.end_offset == 3
    assert j2.read(0, 10) == _payloads(3)
    assert j2.append(_payloads(1, 3)) == (3, 4)
    j2.close()
    j3 = _open(tmp_path)
    assert j3.read(0, 10) == _payloads(4)
    j3.close()


def test_crc_mismatch_in_sealed_segment_refuses_to_open(tmp_path: Path) -> None:
    j = _open(tmp_path)
    j.append(_payloads(5))
    j.close()
    j = _open(tmp_path)  # reopening seals the first segment and starts a new one
    j.append(_payloads(1, 5))
    j.close()
    first = sorted(tmp_path.glob("*.seg"))[0]
    data = bytearray(first.read_bytes())
    data[20] ^= 0xFF
    first.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt):
        _open(tmp_path)
