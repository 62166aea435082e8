"""predmesh.local.cpugroup: finding the cpu cgroup hierarchy and making an idle group in it (a fake
/proc/self and cgroup tree under tmp_path; tests/e2e/test_background_tier.py uses the real one)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from predmesh.local.cpugroup import IdleCpuGroup, cpu_mount, own_cpu_path

V1 = """\
25 30 0:22 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755
26 25 0:23 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
27 25 0:24 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
28 25 0:25 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V2 = "31 30 0:26 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"


def test_the_v1_cpu_hierarchy_wins_over_cpuacct_and_the_unified_one() -> None:
    assert cpu_mount(V1) == (Path("/sys/fs/cgroup/cpu"), 1)
    assert cpu_mount(V2) == (Path("/sys/fs/cgroup"), 2)
    assert cpu_mount("22 1 0:5 / /proc rw - proc proc rw\nnot a mount line\n") is None


def test_own_path_per_version() -> None:
    text = "4:memory:/pod/x\n3:cpu,cpuacct:/pod/y\n0::/user.slice/me\n"
    assert own_cpu_path(text, 1) == "/pod/y"
    assert own_cpu_path(text, 2) == "/user.slice/me"
    assert own_cpu_path("4:memory:/x\n", 1) == "/"


def fake_host(tmp_path: Path, mountinfo: str, cgroup: str) -> Path:
    proc_self = tmp_path / "proc-self"
    proc_self.mkdir(parents=True)
    (proc_self / "mountinfo").write_text(mountinfo)
    (proc_self / "cgroup").write_text(cgroup)
    return proc_self


def test_a_v1_group_is_made_beside_this_process_cgroup_with_cpu_idle_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mount = tmp_path / "cpu"
    (mount / "mesh").mkdir(parents=True)
    proc_self = fake_host(tmp_path, f"27 25 0:24 / {mount} rw - cgroup cgroup rw,cpu\n", "3:cpu:/mesh\n")
    group = IdleCpuGroup.create("bg", proc_self)
    assert group is not None and group.path == mount / "mesh" / "bg"
    assert (group.path / "cpu.idle").read_text() == "1\n"
    group.add(4242)
    assert group.pids() == [4242]
    with caplog.at_level(logging.WARNING, logger="predmesh.local.cpugroup"):
        group.remove()  # a plain directory holding files: not removable, said so, no exception
    assert group.path.exists() and "not removed" in caplog.text


def test_no_group_where_the_host_does_not_allow_one(tmp_path: Path) -> None:
    assert IdleCpuGroup.create("bg", fake_host(tmp_path / "a", "22 1 0:5 / /proc rw - proc proc rw\n", "")) is None
    blocked = tmp_path / "file-not-dir"
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("")
    v1 = fake_host(tmp_path / "b", f"27 25 0:24 / {blocked} rw - cgroup cgroup rw,cpu\n", "3:cpu:/\n")
    assert IdleCpuGroup.create("bg", v1) is None  # mkdir fails: nice alone
    mount = tmp_path / "unified"
    mount.mkdir()
    (mount / "cgroup.subtree_control").write_text("memory pids\n")
    v2 = fake_host(tmp_path / "c", f"31 30 0:26 / {mount} rw - cgroup2 cgroup2 rw\n", "0::/\n")
    assert IdleCpuGroup.create("bg", v2) is None  # the cpu controller is not enabled for children
    (mount / "cgroup.subtree_control").write_text("cpu memory pids\n")
    made = IdleCpuGroup.create("bg", v2)
    assert made is not None and (made.path / "cpu.idle").read_text() == "1\n"
