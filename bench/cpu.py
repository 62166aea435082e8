"""CPU time per process group from /proc, sampled during a measurement.

A *part* is a named set of process sessions: every process this benchmark starts is a
session leader (`ManagedProcess` starts children with `start_new_session=True`), so a
part's CPU is the user + system time of every live process in those sessions (threads
included; a multi-process server such as Ray or tritonserver's python stubs counts whole).
`classify` can split one session into several parts by command line (Ray's proxy and
replica actors live in the session of the process that started Ray).

`CpuSampler` samples every part every `interval_s` on a daemon thread while a load run
goes on; `between(t0, t1)` interpolates each part's CPU seconds spent between two wall
clock times (the load generator reports the measured window, after warm-up). A process
that exits between samples loses its last interval (only short-lived helpers do).
Linux only; used from one thread (plus its own sampling thread).
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PROC = Path("/proc")

# (part name, command line) -> the part the process counts to
Classifier = Callable[[str, str], str]


def parse_stat(text: str) -> tuple[int, int, float]:
    """(ppid, session id, utime + stime in seconds) from the text of /proc/<pid>/stat."""
    # The command name (field 2) is in parentheses and may hold spaces or ')'.
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): ppid = field 4, session = field 6, utime/stime = fields 14/15.
    ppid, session = int(rest[1]), int(rest[3])
    return ppid, session, (int(rest[11]) + int(rest[12])) / CLOCK_TICKS


def _cmdline(pid: str) -> str:
    try:
        return (PROC / pid / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def processes() -> Iterator[tuple[str, int, float]]:
    """(pid, session id, CPU seconds so far) of every live process (one that exits meanwhile is skipped)."""
    for entry in os.scandir(PROC):
        if not entry.name.isdigit():
            continue
        try:
            text = (PROC / entry.name / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        _, session, cpu = parse_stat(text)
        yield entry.name, session, cpu


def snapshot(sessions: Mapping[str, Sequence[int]], classify: Classifier | None = None) -> dict[str, float]:
    """CPU seconds so far of every part: the sum over live processes of its sessions."""
    owner = {sid: name for name, sids in sessions.items() for sid in sids}
    totals = dict.fromkeys(sessions, 0.0)
    for pid, session, cpu in processes():
        name = owner.get(session)
        if name is None:
            continue
        if classify is not None:
            name = classify(name, _cmdline(pid))
        totals[name] = totals.get(name, 0.0) + cpu
    return totals


def interpolate(samples: Sequence[tuple[float, dict[str, float]]], when: float) -> dict[str, float]:
    """Each part's CPU seconds at wall time `when`, linear between the two nearest samples."""
    if not samples:
        return {}
    times = [t for t, _ in samples]
    i = bisect.bisect_left(times, when)
    if i <= 0:
        return dict(samples[0][1])
    if i >= len(samples):
        return dict(samples[-1][1])
    (t0, a), (t1, b) = samples[i - 1], samples[i]
    w = (when - t0) / (t1 - t0) if t1 > t0 else 1.0
    return {k: a.get(k, 0.0) + w * (b.get(k, 0.0) - a.get(k, 0.0)) for k in set(a) | set(b)}


class CpuSampler:
    """Samples `snapshot(sessions, classify)` every `interval_s` between `start()` and `stop()`."""

    def __init__(
        self,
        sessions: Mapping[str, Sequence[int]],
        classify: Classifier | None = None,
        interval_s: float = 0.1,
    ) -> None:
        self._sessions = {k: list(v) for k, v in sessions.items() if v}
        self._classify = classify
        self._interval_s = interval_s
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        self.samples.append((time.time(), snapshot(self._sessions, self._classify)))

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._sample()

    def start(self) -> CpuSampler:
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="cpu-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._sample()

    def __enter__(self) -> CpuSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def between(self, t0: float, t1: float) -> dict[str, float]:
        """CPU seconds each part spent between wall times t0 and t1 (>= 0)."""
        a, b = interpolate(self.samples, t0), interpolate(self.samples, t1)
        return {k: max(0.0, b.get(k, 0.0) - a.get(k, 0.0)) for k in set(a) | set(b)}


def per_request_us(cpu_s: Mapping[str, float], requests: int) -> dict[str, float]:
    """CPU microseconds per request of each part (empty when nothing succeeded)."""
    if requests <= 0:
        return {}
    return {k: v / requests * 1e6 for k, v in sorted(cpu_s.items())}
