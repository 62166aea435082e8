"""bench.pause on real process trees: the sessions not measured are stopped (children included)
for the measurement and resumed after it; the measured sessions keep running."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.pause import Pauser, session_processes

# A session leader with one child (as tritonserver's python stubs or Ray's workers are).
TREE = (
    "import subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "time.sleep(60)\n"
)


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.fixture
def trees() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [subprocess.Popen([sys.executable, "-c", TREE], start_new_session=True) for _ in range(2)]
    deadline = time.monotonic() + 20
    while any(len(session_processes([p.pid])) < 2 for p in procs):
        assert time.monotonic() < deadline, "children not started"
        time.sleep(0.05)
    yield procs
    for proc in procs:
        for pid in session_processes([proc.pid]):
            subprocess.run(["kill", "-CONT", str(pid)], check=False)
            subprocess.run(["kill", "-KILL", str(pid)], check=False)
        proc.wait()


def test_the_other_sessions_are_stopped_during_a_measurement_and_resumed_after(
    trees: list[subprocess.Popen[bytes]],
) -> None:
    measured, other = trees
    pauser = Pauser([measured.pid, other.pid])
    with pauser.only([measured.pid]) as paused:
        assert sorted(paused) == sorted(session_processes([other.pid]))  # leader and child
        assert {_state(pid) for pid in paused} == {"T"}
        assert {_state(pid) for pid in session_processes([measured.pid])} <= {"S", "R"}
    assert {_state(pid) for pid in paused} <= {"S", "R"}


def test_resumed_even_when_the_measurement_fails(trees: list[subprocess.Popen[bytes]]) -> None:
    measured, other = trees
    with pytest.raises(RuntimeError), Pauser([measured.pid, other.pid]).only([measured.pid]) as paused:
        raise RuntimeError("load generator failed")
    assert paused and {_state(pid) for pid in paused} <= {"S", "R"}


def test_disabled_pauses_nothing(trees: list[subprocess.Popen[bytes]]) -> None:
    measured, other = trees
    with Pauser([measured.pid, other.pid], enabled=False).only([measured.pid]) as paused:
        assert paused == []
        assert {_state(pid) for pid in session_processes([other.pid])} <= {"S", "R"}
