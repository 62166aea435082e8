"""Peers not being measured are paused, so a row is measured as if its system ran alone.

A side-by-side run keeps every system started (predmesh's processes, MLServer, Triton, FastAPI,
Ray Serve, Feast) on a 2-core box. Their idle work is not idle: Ray's GCS, raylet, controller and
proxy health checks, Triton's python stubs and each server's timers take CPU from whichever row
is measured (stop 15: the full path cost 2,800-3,000 us per prediction without Ray started, 3,901
with it). `Pauser.only(sessions)` sends SIGSTOP to every process of the other started sessions
(found in /proc by session id, as `bench.cpu` counts them, so a server's children are paused too)
for the duration of one measurement, then SIGCONT. A paused process keeps its sockets and state:
it resumes where it stopped, and no peer calls it while it is paused (the measured row's parts
list everything its requests touch; a row that needed a paused part would show errors, never
better numbers).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterable, Iterator

from bench.cpu import processes

log = logging.getLogger(__name__)


def session_processes(sessions: Iterable[int]) -> list[int]:
    """Every live process whose session id is one of `sessions`."""
    wanted = set(sessions)
    return [int(pid) for pid, session, _ in processes() if session in wanted]


class Pauser:
    """Pauses the sessions of `everything` that a measurement does not use (module docstring)."""

    def __init__(self, everything: Iterable[int], enabled: bool = True) -> None:
        self._all = set(everything)
        self.enabled = enabled

    @contextlib.contextmanager
    def only(self, active: Iterable[int]) -> Iterator[list[int]]:
        """While inside: every process of the other sessions is stopped; yields their pids."""
        idle = self._all - set(active)
        stopped = self._signal(session_processes(idle), signal.SIGSTOP) if self.enabled and idle else []
        try:
            yield stopped
        finally:
            self._signal(stopped, signal.SIGCONT)

    @staticmethod
    def _signal(pids: list[int], sig: int) -> list[int]:
        done = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                done.append(pid)
            except ProcessLookupError:
                pass
            except PermissionError as err:
                log.warning("cannot %s pid %d: %s", signal.Signals(sig).name, pid, err)
        return done
