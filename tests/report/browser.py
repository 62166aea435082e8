"""A real headless Chromium for report tests: the DOM after its scripts ran, and a screenshot.

Chromium is Debian's `chromium` package (./dev setup installs it, like redis-server). When it
is missing the tests fail (they never skip): a report nobody rendered is not checked.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars")


def chromium() -> str:
    for name in (os.environ.get("PREDMESH_CHROMIUM", ""), "chromium", "chromium-browser"):
        path = shutil.which(name) if name else None
        if path:
            return path
    pytest.fail("chromium not found: ./dev setup installs Debian's `chromium` (or set PREDMESH_CHROMIUM)")


def _run(page: Path, profile: Path, *args: str) -> str:
    cmd = [chromium(), *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def dump_dom(page: Path, profile: Path) -> str:
    """The serialized DOM once the page loaded and its inline scripts ran."""
    return _run(page, profile, "--dump-dom")


def screenshot(page: Path, profile: Path, out: Path, size: tuple[int, int] = (1000, 1800)) -> Path:
    _run(page, profile, f"--screenshot={out}", f"--window-size={size[0]},{size[1]}")
    assert out.is_file()
    return out


class Elements(HTMLParser):
    """Every start tag as (tag, attributes), in document order."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.items: list[tuple[str, dict[str, str]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.items.append((tag, {k: v or "" for k, v in attrs}))

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        want = {k.rstrip("_").replace("_", "-"): v for k, v in attrs.items()}
        return [a for t, a in self.items if t == tag and all(a.get(k) == v for k, v in want.items())]


def _paeth_row(line: bytearray, prev: bytearray, channels: int, average: bool) -> None:
    for i in range(len(line)):
        a = line[i - channels] if i >= channels else 0
        b = prev[i]
        if average:
            line[i] = (line[i] + (a + b) // 2) & 255
            continue
        c = prev[i - channels] if i >= channels else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255


def png_pixels(path: Path) -> np.ndarray:
    """The RGB pixels (height x width x 3, uint8) of an 8-bit RGB/RGBA PNG (Chromium's screenshots)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6), (depth, color)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
    stride = width * channels
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        ftype, line = int(raw[y, 0]), raw[y, 1:]
        if ftype == 0:
            row = line.copy()
        elif ftype == 1:  # Sub: a running sum per channel
            row = (np.cumsum(line.reshape(width, channels), axis=0, dtype=np.uint64) % 256).astype(np.uint8).ravel()
        elif ftype == 2:  # Up
            row = line + prev
        else:  # Average, Paeth (rare in screenshots): byte by byte
            buf = bytearray(line.tobytes())
            _paeth_row(buf, bytearray(prev.tobytes()), channels, average=ftype == 3)
            row = np.frombuffer(bytes(buf), dtype=np.uint8)
        out[y] = row
        prev = row
    return out.reshape(height, width, channels)[:, :, :3]
