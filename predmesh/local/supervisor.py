"""Keeps the processes of a local mesh alive and reports on them.

`Supervisor` watches `ManagedProcess`es that are already running. One thread per
process polls it; when it dies, the thread logs the exit status, kills what is left of
its process group, waits a back-off (doubling from `backoff_initial_s` up to
`backoff_max_s`; back to the initial value after `stable_after_s` of healthy uptime)
and starts it again on the same ports, then runs the process's `after_restart` hook
(e.g. re-create the broker's topics). Every `status_interval_s` it writes a status file
(JSON, atomically replaced) that `predmesh status` reads:

    {"supervisor_pid": ..., "updated_at": <unix s>, "processes": [
        {"name", "pid", "state", "started_at", "uptime_s", "restarts", "last_exit", "health"}, ...]}

`state` is `running`, `backoff` (dead, waiting to restart) or `starting`; `health` is the
process's own readiness probe (gRPC health, KServe ServerReady, PING, ...):
`SERVING`, `NOT_SERVING` or `UNKNOWN` (not probed yet / not running).

Lifecycle: `watch()` each process, `start()`, `stop()` (joins the threads; the caller
then stops the processes). Thread-safe: the status snapshot is guarded by one lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from predmesh.local.procs import ManagedProcess

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"


@dataclass
class _Watched:
    proc: ManagedProcess
    after_restart: Callable[[], None] | None
    restarts: int = 0
    state: str = "running"
    health: str = "UNKNOWN"
    backoff_s: float = 0.0
    thread: threading.Thread | None = field(default=None, repr=False)


class Supervisor:
    """Restart-on-death with back-off for a set of processes, plus a status file."""

    def __init__(
        self,
        status_path: Path | None = None,
        *,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 10.0,
        stable_after_s: float = 30.0,
        poll_interval_s: float = 0.1,
        health_interval_s: float = 1.0,
        status_interval_s: float = 1.0,
    ) -> None:
        self.status_path = status_path
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.stable_after_s = stable_after_s
        self.poll_interval_s = poll_interval_s
        self.health_interval_s = health_interval_s
        self.status_interval_s = status_interval_s
        self._watched: list[_Watched] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._status_thread: threading.Thread | None = None
        self.restarted = threading.Condition(self._lock)  # notified after every successful restart

    def watch(self, proc: ManagedProcess, after_restart: Callable[[], None] | None = None) -> None:
        """Supervise `proc` (already started). `after_restart` runs after each successful restart."""
        entry = _Watched(proc, after_restart, backoff_s=self.backoff_initial_s)
        with self._lock:
            self._watched.append(entry)
        if self._status_thread is not None:
            self._spawn(entry)

    def start(self) -> None:
        self._stopping.clear()
        with self._lock:
            entries = list(self._watched)
        for entry in entries:
            self._spawn(entry)
        self._status_thread = threading.Thread(target=self._run_status, name="supervisor-status", daemon=True)
        self._status_thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop supervising (processes keep running; a restart in progress may finish first)."""
        self._stopping.set()
        threads = [e.thread for e in self._watched if e.thread is not None]
        if self._status_thread is not None:
            threads.append(self._status_thread)
        deadline = time.monotonic() + timeout_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._status_thread = None
        if self.status_path is not None:
            with contextlib.suppress(OSError):
                self.status_path.unlink()

    def restarts(self, name: str) -> int:
        with self._lock:
            return sum(e.restarts for e in self._watched if e.proc.name == name)

    def snapshot(self) -> dict[str, Any]:
        """The status document (what the status file holds)."""
        now = time.time()
        procs = []
        with self._lock:
            for e in self._watched:
                running = e.state == "running"
                procs.append(
                    {
                        "name": e.proc.name,
                        "pid": e.proc.pid if running else None,
                        "state": e.state,
                        "started_at": e.proc.started_at if running else None,
                        "uptime_s": round(now - e.proc.started_at, 1) if running and e.proc.started_at else 0.0,
                        "restarts": e.restarts,
                        "last_exit": e.proc.last_exit,
                        "health": e.health if running else "UNKNOWN",
                    }
                )
        return {"supervisor_pid": os.getpid(), "updated_at": now, "processes": procs}

    # -- threads ----------------------------------------------------------------
    def _spawn(self, entry: _Watched) -> None:
        entry.thread = threading.Thread(
            target=self._run_one, args=(entry,), name=f"supervise-{entry.proc.name}", daemon=True
        )
        entry.thread.start()

    def _run_one(self, entry: _Watched) -> None:
        proc = entry.proc
        next_probe = 0.0
        while not self._stopping.is_set():
            if proc.running():
                now = time.monotonic()
                if now >= next_probe:
                    self._probe(entry)
                    next_probe = now + self.health_interval_s
                if proc.started_at and time.time() - proc.started_at > self.stable_after_s:
                    entry.backoff_s = self.backoff_initial_s
            elif proc.died() or entry.state == "backoff":  # a death, or a restart that failed
                self._restart(entry)
                next_probe = 0.0
                continue
            else:  # stopped on purpose by its owner (tests, shutdown): not ours to restart
                with self._lock:
                    entry.state, entry.health = "stopped", "UNKNOWN"
            if entry.state == "stopped" and proc.running():
                with self._lock:
                    entry.state = "running"  # its owner started it again
            self._stopping.wait(self.poll_interval_s)

    def _probe(self, entry: _Watched) -> None:
        try:
            ok = bool(entry.proc.ready())
        except Exception:
            ok = False
        with self._lock:
            entry.health = "SERVING" if ok else "NOT_SERVING"

    def _restart(self, entry: _Watched) -> None:
        proc = entry.proc
        pid = proc.pid
        code = proc.reap()
        with self._lock:
            entry.state = "backoff"
            entry.health = "UNKNOWN"
            delay = entry.backoff_s
            entry.backoff_s = min(entry.backoff_s * 2, self.backoff_max_s)
        log.warning(
            "supervisor: %s (pid %s) died with %s; restarting in %.1fs (restart #%d)",
            proc.name,
            pid,
            _describe_exit(code),
            delay,
            entry.restarts + 1,
        )
        if self._stopping.wait(delay):
            return
        with self._lock:
            entry.state = "starting"
        try:
            proc.start()
        except Exception as err:
            log.error("supervisor: restarting %s failed: %s", proc.name, str(err).splitlines()[0])
            with self._lock:
                entry.state = "backoff"
            return  # not running: the next loop iteration backs off and tries again
        if entry.after_restart is not None:
            try:
                entry.after_restart()
            except Exception:
                log.exception("supervisor: after-restart hook of %s failed", proc.name)
        with self._lock:
            entry.restarts += 1
            entry.state = "running"
            self.restarted.notify_all()
        log.warning("supervisor: %s restarted (pid %s, restart #%d)", proc.name, proc.pid, entry.restarts)

    def _run_status(self) -> None:
        while True:
            self._write_status()
            if self._stopping.wait(self.status_interval_s):
                return

    def _write_status(self) -> None:
        if self.status_path is None:
            return
        tmp = self.status_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self.snapshot(), indent=2))
            os.replace(tmp, self.status_path)
        except OSError as err:
            log.debug("status file not written: %s", err)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "unknown status"
    if code < 0:
        import signal

        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"exit status {code}"
