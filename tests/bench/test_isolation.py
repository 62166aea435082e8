"""bench.isolation's mechanisms on real processes: per-thread schedstat, SCHED_BATCH on every thread,
low-priority CPU burners that are gone afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from bench import isolation
from predmesh.local.cpugroup import IdleCpuGroup
from predmesh.local.mesh import BACKGROUND_NICENESS, LocalMesh

# Burns CPU on two threads (the main one and a second), forever.
THREADED = (
    "import threading\ndef spin():\n    while True: pass\nthreading.Thread(target=spin, daemon=True).start()\nspin()\n"
)


@pytest.fixture
def spinner() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", THREADED], start_new_session=True)
    deadline = time.monotonic() + 10
    while len(isolation.threads(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    yield proc
    proc.kill()
    proc.wait()


def test_schedstat_counts_every_thread_time_on_a_cpu(spinner: subprocess.Popen[bytes]) -> None:
    first = isolation.schedstat([spinner.pid])
    time.sleep(0.3)
    second = isolation.schedstat([spinner.pid])
    assert second[0] - first[0] >= 0.1e9  # at least 0.1 s on a CPU in 0.3 s of wall time
    assert second[1] >= first[1] >= 0
    assert isolation.schedstat([]) == (0, 0)


@dataclass
class _Tier:
    """What apply_policy reads of a mesh: its background processes and their idle cpu cgroup."""

    background: list[Any]
    background_group: IdleCpuGroup | None = None


def test_batch_policy_reaches_every_thread_and_is_undone(spinner: subprocess.Popen[bytes]) -> None:
    tier = cast(LocalMesh, _Tier([SimpleNamespace(pid=spinner.pid)]))
    tids = isolation.threads(spinner.pid)
    assert len(tids) >= 2
    assert {os.sched_getscheduler(t) for t in tids} == {os.SCHED_OTHER}
    assert isolation.apply_policy("batch", tier) == ""
    assert {os.sched_getscheduler(t) for t in isolation.threads(spinner.pid)} == {os.SCHED_BATCH}
    isolation.undo_policy("batch", tier)
    assert {os.sched_getscheduler(t) for t in isolation.threads(spinner.pid)} == {os.SCHED_OTHER}


def test_nice_policy_needs_the_mesh_idle_group(spinner: subprocess.Popen[bytes]) -> None:
    tier = cast(LocalMesh, _Tier([SimpleNamespace(pid=spinner.pid)]))
    assert "nice alone already" in isolation.apply_policy("nice", tier)


def test_burners_run_at_the_background_priority_and_are_gone_after() -> None:
    with isolation.burners(2) as pids:
        assert len(pids) == 2
        assert [os.getpriority(os.PRIO_PROCESS, pid) for pid in pids] == [BACKGROUND_NICENESS] * 2
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
