"""An idle CPU cgroup for the local mesh's background processes (cpu.idle = 1: SCHED_IDLE for a group).

A task at nice 19 still waits out the rest of a running low-priority task's slice when it wakes, and
a background process that sleeps and wakes all the time (RPCs, I/O) gets picked, with a fresh slice,
again and again: the real-time path's run-queue wait grew by 1-3 ms per request with a batch job at
nice 19 (docs/BENCHMARKS.md, "Isolation mechanisms"). A group with `cpu.idle` set is preempted at
once by any other task's wake-up, and gets CPU only when nothing else wants it.

`IdleCpuGroup.create(name)` makes such a group next to this process's own `cpu` cgroup (cgroup v1
`cpu` hierarchy, or cgroup v2 when this process sits at the root with the cpu controller enabled
for children); None where the kernel or the permissions do not allow it (not root, no `cpu.idle`
before Linux 5.15, a container's read-only /sys/fs/cgroup): the caller then relies on nice alone.
`add(pid)` moves a whole process (every thread; threads it starts later stay in the group);
`remove()` deletes the group once its processes are gone. Used from one thread.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PROC_SELF = Path("/proc/self")


def cpu_mount(mountinfo: str) -> tuple[Path, int] | None:
    """(mount point, cgroup version) of the cgroup hierarchy holding the cpu controller."""
    unified: Path | None = None
    for line in mountinfo.splitlines():
        head, separator, tail = line.partition(" - ")  # mount fields - fstype source super-options
        fields, after = head.split(), tail.split()
        if not separator or len(fields) < 5 or len(after) < 3:
            continue
        point, fstype = Path(fields[4]), after[0]
        if fstype == "cgroup" and "cpu" in after[2].split(","):
            return point, 1
        if fstype == "cgroup2" and unified is None:
            unified = point
    return (unified, 2) if unified is not None else None


def own_cpu_path(cgroup: str, version: int) -> str:
    """This process's cgroup path (relative to the mount) for the cpu controller, from /proc/self/cgroup."""
    for line in cgroup.splitlines():
        index, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if version == 1 and "cpu" in controllers.split(","):
            return path
        if version == 2 and index == "0" and controllers == "":
            return path
    return "/"


def cpu_cgroup_dir(proc: Path) -> tuple[Path, int, Path] | None:
    """(mount point, cgroup version, cgroup directory) of the cpu cgroup of the process whose /proc
    entry is `proc` (/proc/self, /proc/<pid>); None without a cpu cgroup hierarchy."""
    found = cpu_mount((proc / "mountinfo").read_text())
    if found is None:
        return None
    mount, version = found
    return mount, version, mount / own_cpu_path((proc / "cgroup").read_text(), version).lstrip("/")


@dataclass(frozen=True)
class IdleCpuGroup:
    path: Path

    @classmethod
    def create(cls, name: str, proc_self: Path = PROC_SELF) -> IdleCpuGroup | None:
        """A new idle group `name` beside this process's cpu cgroup, or None (the reason is logged)."""
        try:
            found = cpu_cgroup_dir(proc_self)
            if found is None:
                log.info("no cpu cgroup hierarchy: background processes rely on nice alone")
                return None
            mount, version, parent = found
            delegated = version == 1 or (
                parent == mount and "cpu" in (mount / "cgroup.subtree_control").read_text().split()
            )
            if not delegated:
                log.info("cgroup v2 without the cpu controller for a group of ours: nice alone")
                return None
            path = parent / name
            path.mkdir(exist_ok=True)
            try:
                (path / "cpu.idle").write_text("1\n")
            except OSError:
                path.rmdir()
                raise
        except OSError as err:
            log.info("no idle cpu cgroup (%s): background processes rely on nice alone", err)
            return None
        return cls(path)

    def add(self, pid: int) -> None:
        """Move process `pid`, every thread of it, into the group (OSError if it cannot)."""
        (self.path / "cgroup.procs").write_text(f"{pid}\n")

    def pids(self) -> list[int]:
        with contextlib.suppress(OSError):
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        return []

    def remove(self) -> None:
        """Delete the group (a no-op while a process is still in it: it is logged and left)."""
        try:
            self.path.rmdir()
        except FileNotFoundError:
            pass
        except OSError as err:
            log.warning("idle cpu group %s not removed (%s)", self.path, err)
