"""Managed child processes on loopback ports.

`ManagedProcess` owns one subprocess: it starts it with its output in a log file,
waits until a readiness probe passes, and stops it (SIGTERM, then SIGKILL after a
timeout). It is used from one thread; `stop()` is idempotent. Subclasses say how to
build the command line and how to probe readiness.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from predmesh.local.cpugroup import IdleCpuGroup

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def wait_until(
    probe: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll `probe` until it returns True; raise TimeoutError (or RuntimeError if `proc` died)."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before it was ready")
        with contextlib.suppress(Exception):
            if probe():
                return
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    raise TimeoutError(f"{what} not ready after {timeout:.1f}s")


def lower_priority(pid: int, niceness: int) -> None:
    """Run `pid` at `niceness`, right after its exec (before the interpreter starts a thread: threads
    inherit it). With the kernel's autogroup on (sched_autogroup_enabled), CPU is shared between
    sessions first and a task's nice counts only inside its own session; a process started with
    `start_new_session` is a session of its own, so its session's nice (/proc/<pid>/autogroup) is
    set too, or it would compete with every other session as an equal."""
    os.setpriority(os.PRIO_PROCESS, pid, niceness)
    with contextlib.suppress(OSError):  # no autogroup: the task's nice above is what counts
        Path(f"/proc/{pid}/autogroup").write_text(f"{niceness}\n")


class PortTaken(RuntimeError):
    """A process exited at start because its listening port was already bound."""


class ManagedProcess:
    """One child process with a log file, a readiness probe and a clean stop."""

    name = "process"
    ready_timeout_s = 30.0

    def __init__(self, workdir: Path | None = None, env: Mapping[str, str] | None = None) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix=f"predmesh-{self.name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        self._extra_env = dict(env or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: object | None = None
        self.niceness = 0  # > 0: started at that lower CPU priority (nice), its threads with it
        self.cpu_group: IdleCpuGroup | None = None  # set: moved into that idle cpu cgroup at every start
        self.started_at = 0.0  # wall-clock time of the last successful start
        self.last_exit: int | None = None  # exit status of the previous run (negative: killed by signal)

    # -- to override -------------------------------------------------------
    def command(self) -> Sequence[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self._extra_env)
        return env

    # -- lifecycle ---------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def died(self) -> bool:
        """True when the process was started and exited on its own (or was killed from outside) since;
        False while it runs and after `stop()` / `kill()` (a deliberate stop is not a death)."""
        proc = self._proc
        return proc is not None and proc.poll() is not None

    def reap(self) -> int | None:
        """After an unexpected death: kill what is left of its process group, close the log.

        Returns the exit status (negative = killed by that signal); the object can `start()` again.
        """
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        code = proc.wait()
        _kill_group(proc.pid, signal.SIGKILL)
        self._close_log()
        self.last_exit = code
        return code

    def start(self) -> ManagedProcess:
        """Start and wait until ready. A first start that lost its port to another process (a port
        from `free_port` is only free "a moment ago") is retried on new ports when the process can
        choose them (`repick_ports`); a restart keeps its ports, which clients already know."""
        for attempt in range(3):
            try:
                return self._start_once()
            except PortTaken:
                if attempt == 2 or self.started_at or not self.repick_ports():
                    raise
                log.info("%s: port taken, starting again on new ports", self.name)
        raise AssertionError("unreachable")

    def repick_ports(self) -> bool:
        """Choose new free ports before a first start is retried; False: this process cannot."""
        return False

    def _start_once(self) -> ManagedProcess:
        if self.running():
            return self
        log_file = open(self.log_path, "ab")
        self._log_file = log_file
        cmd = list(self.command())
        log.debug("starting %s: %s", self.name, " ".join(cmd))
        self._proc = subprocess.Popen(
            cmd,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=self.environment(),
            cwd=self.workdir,
            start_new_session=True,
        )
        if self.niceness:
            lower_priority(self._proc.pid, self.niceness)
        if self.cpu_group is not None:
            try:
                self.cpu_group.add(self._proc.pid)
            except OSError as err:  # then nice alone: slower to yield, not wrong
                log.warning("%s: not moved into %s (%s)", self.name, self.cpu_group.path, err)
        try:
            wait_until(self.ready, self.ready_timeout_s, self.name, self._proc)
        except Exception as err:
            tail = self.log_tail()
            self.stop()
            kind = PortTaken if "Address already in use" in tail else RuntimeError
            raise kind(f"{self.name} failed to start: {err}\n--- log tail ---\n{tail}") from err
        self.started_at = time.time()
        return self

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        """Signal the whole process group, wait up to `timeout`, then SIGKILL whatever is left of it."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                _kill_group(proc.pid, sig)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    _kill_group(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
            _kill_group(proc.pid, signal.SIGKILL)  # children that outlived their parent
            self.last_exit = proc.returncode
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()  # type: ignore[attr-defined]
            self._log_file = None

    def kill(self) -> None:
        """Hard kill (SIGKILL) of the whole group, as a crash would."""
        self.stop(timeout=5, sig=signal.SIGKILL)

    def crash(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the main process only, as an outside `kill -9 PID` would (fault injection).

        Nothing is reaped here: a supervisor (or `reap()`) notices the death and cleans up.
        """
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _kill_group(pgid: int, sig: int) -> None:
    """Signal every process of the group `pgid` (our children lead their own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def find_binary(name: str, extra_dirs: Sequence[Path] = ()) -> str:
    """Locate an executable: next to our interpreter first, then PATH, then `extra_dirs`."""
    candidates = [Path(sys.executable).parent / name]
    which = shutil.which(name)
    if which:
        candidates.append(Path(which))
    candidates += [Path(d) / name for d in extra_dirs]
    for cand in candidates:
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    raise FileNotFoundError(f"{name} not found (looked next to {sys.executable}, on PATH and in {list(extra_dirs)})")


class RedisServer(ManagedProcess):
    """A real redis-server on a loopback port.

    `persist=True` turns on the append-only file in `workdir` (fsync every second), so a
    restarted server comes back with its data; the default keeps nothing on disk (tests).
    `tls` (TlsFiles: certificate, key, CA) serves TLS only (no plaintext port) and requires
    client certificates of that CA (`tls-auth-clients yes`); `url` is then rediss://.
    """

    name = "redis"
    ready_timeout_s = 15.0

    def __init__(
        self, port: int | None = None, workdir: Path | None = None, persist: bool = False, tls: Any = None
    ) -> None:
        super().__init__(workdir)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._own_port = port is None  # a caller's port is kept (it may be a restart on a known port)
        self.persist = persist
        self.tls = tls

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}/0"

    def repick_ports(self) -> bool:
        if not self._own_port:
            return False
        self.port = free_port()
        return True

    def command(self) -> Sequence[str]:
        binary = find_binary("redis-server", [Path("/usr/bin"), Path("/usr/local/bin")])
        tls: list[str] = []
        if self.tls is not None:
            tls = [
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(self.tls.cert),
                "--tls-key-file",
                str(self.tls.key),
                "--tls-ca-cert-file",
                str(self.tls.ca),
                "--tls-auth-clients",
                "yes",
            ]
        return [
            binary,
            *tls,
            "--port",
            "0" if self.tls is not None else str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "yes" if self.persist else "no",
            "--appendfsync",
            "everysec",
            "--protected-mode",
            "no",
            "--dir",
            str(self.workdir),
        ]

    def ready(self) -> bool:
        with socket.create_connection((self.host, self.port), timeout=0.5) as raw:
            sock = raw
            if self.tls is not None:
                ctx = ssl.create_default_context(cafile=str(self.tls.ca))
                ctx.load_cert_chain(str(self.tls.cert), str(self.tls.key))
                sock = ctx.wrap_socket(raw, server_hostname=self.host)
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")


class PythonService(ManagedProcess):
    """A predmesh service run as `python -m <module>`, ready when its gRPC health says SERVING."""

    def __init__(self, name: str, module: str, port: int, env: Mapping[str, str], workdir: Path | None = None) -> None:
        self.name = name
        self.module = module
        self.host = "127.0.0.1"
        self.port = port
        self.probe_tls: Any = None  # predmesh.common.tls.TlsFiles of a client when the service serves mTLS
        super().__init__(workdir, env)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> Sequence[str]:
        return [sys.executable, "-m", self.module]

    def ready(self) -> bool:
        return grpc_health_serving(self.address, tls=self.probe_tls)


def probe_channel(address: str, tls: Any = None) -> Any:
    """A blocking channel for a readiness probe: mTLS with `tls` files (ca, cert, key), else plaintext."""
    import grpc

    if tls is None:
        return grpc.insecure_channel(address)
    creds = grpc.ssl_channel_credentials(tls.ca.read_bytes(), tls.key.read_bytes(), tls.cert.read_bytes())
    return grpc.secure_channel(address, creds)


def grpc_health_serving(address: str, service: str = "", timeout: float = 0.5, tls: Any = None) -> bool:
    """True when the gRPC health service at `address` reports SERVING (over mTLS with `tls` files)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with probe_channel(address, tls) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)
