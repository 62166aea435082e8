"""Supervision of local processes: restart with back-off, logged exit status, status file,
whole process groups killed, Redis data kept across a crash (append-only file)."""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import Sequence
from pathlib import Path

import pytest
import redis

from predmesh.cli import main as cli_main
from predmesh.local.procs import ManagedProcess, RedisServer, wait_until
from predmesh.local.supervisor import Supervisor


class _Forker(ManagedProcess):
    """A shell that forks a long-lived child (like tritonserver's python-backend stubs) and records its pid."""

    name = "forker"

    def command(self) -> Sequence[str]:
        return ["sh", "-c", f"sleep 300 & echo $! > {self.workdir}/child.pid; wait"]

    def ready(self) -> bool:
        return (self.workdir / "child.pid").exists() and bool((self.workdir / "child.pid").read_text().strip())

    def child_pid(self) -> int:
        return int((self.workdir / "child.pid").read_text())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_stop_kills_the_whole_process_group(tmp_path: Path) -> None:
    proc = _Forker(workdir=tmp_path)
    proc.start()
    child = proc.child_pid()
    assert _alive(child)
    proc.stop(timeout=2)
    wait_until(lambda: not _alive(child), 5, "forked child gone")


def test_supervisor_restarts_a_killed_process_logs_it_and_reports_status(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    proc = _Forker(workdir=tmp_path / "forker")
    proc.start()
    status_path = tmp_path / "status.json"
    sup = Supervisor(status_path, backoff_initial_s=0.05, status_interval_s=0.1, health_interval_s=0.1)
    sup.watch(proc)
    caplog.set_level(logging.WARNING, logger="predmesh.local.supervisor")
    sup.start()
    try:
        first_pid, first_child = proc.pid, proc.child_pid()
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)  # as `kill -9` from outside would
        wait_until(lambda: sup.restarts("forker") == 1, 10, "restart")
        assert proc.running() and proc.pid != first_pid
        assert proc.last_exit == -signal.SIGKILL
        wait_until(lambda: not _alive(first_child), 5, "orphaned child of the dead process killed")
        messages = [r.getMessage() for r in caplog.records]
        assert any("forker" in m and "died with signal SIGKILL" in m for m in messages), messages
        assert any("forker restarted" in m for m in messages), messages

        def reported() -> bool:
            doc = json.loads(status_path.read_text())
            (entry,) = doc["processes"]
            return bool(entry["restarts"] == 1 and entry["pid"] == proc.pid and entry["health"] == "SERVING")

        wait_until(reported, 5, "status file shows the restart")
        entry = json.loads(status_path.read_text())["processes"][0]
        assert entry["state"] == "running" and entry["last_exit"] == -9 and entry["uptime_s"] >= 0
    finally:
        sup.stop()
        proc.stop(timeout=2)
    assert not status_path.exists()


def test_backoff_grows_while_a_process_keeps_dying(tmp_path: Path) -> None:
    proc = _Forker(workdir=tmp_path / "forker")
    proc.start()
    sup = Supervisor(None, backoff_initial_s=0.2, backoff_max_s=0.8)
    sup.watch(proc)
    sup.start()
    try:
        for expected in (1, 2, 3):
            pid = proc.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: sup.restarts("forker") == expected, 10, f"restart {expected}")  # noqa: B023
        entry = sup._watched[0]
        assert entry.backoff_s == pytest.approx(0.8)  # 0.2 -> 0.4 -> 0.8 (capped)
    finally:
        sup.stop()
        proc.stop(timeout=2)


def test_persistent_redis_keeps_its_data_across_a_kill(tmp_path: Path) -> None:
    server = RedisServer(workdir=tmp_path / "redis", persist=True)
    server.start()
    sup = Supervisor(None, backoff_initial_s=0.05)
    sup.watch(server)
    sup.start()
    try:
        client = redis.Redis.from_url(server.url)
        client.hset("features:user:u1", mapping={"amount_avg_30d": "12.5"})
        server.crash(signal.SIGKILL)
        wait_until(lambda: sup.restarts("redis") == 1, 15, "redis restart")
        assert client.hget("features:user:u1", "amount_avg_30d") == b"12.5"
        client.close()
    finally:
        sup.stop()
        server.stop()


def test_status_without_a_running_mesh_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = ["--state-dir", str(tmp_path)]
    predict = ["predict", *state, "--model", "fraud", "--entity", "u1"]
    for argv in (["status", *state], ["logs", *state, "tail"], predict):
        with pytest.raises(SystemExit) as exc:
            cli_main(argv)
        assert "no running mesh" in str(exc.value.code)
    # A mesh.json left behind by a dead `predmesh up` is not a running mesh.
    (tmp_path / "mesh.json").write_text(json.dumps({"pid": 2**22 + 12345, "target": "127.0.0.1:1"}))
    with pytest.raises(SystemExit) as exc:
        cli_main(["status", "--state-dir", str(tmp_path)])
    assert "not running any more" in str(exc.value.code)


def test_logs_tail_without_a_broker_exits_1_quickly(capsys: pytest.CaptureFixture[str]) -> None:
    from predmesh.local.procs import free_port

    code = cli_main(["logs", "tail", "--bootstrap", f"127.0.0.1:{free_port()}", "--connect-timeout-s", "1"])
    assert code == 1
    assert "no Kafka broker answers" in capsys.readouterr().err


def test_a_deliberate_stop_is_not_restarted(tmp_path: Path) -> None:
    proc = _Forker(workdir=tmp_path / "forker")
    proc.start()
    sup = Supervisor(None, backoff_initial_s=0.05, poll_interval_s=0.02)
    sup.watch(proc)
    sup.start()
    try:
        proc.stop(timeout=2)  # its owner stops it (as the chaos tests do)
        wait_until(lambda: sup.snapshot()["processes"][0]["state"] == "stopped", 5, "reported stopped")
        assert not proc.running() and sup.restarts("forker") == 0
        proc.start()  # and starts it again: supervised as before
        wait_until(lambda: sup.snapshot()["processes"][0]["state"] == "running", 5, "reported running")
    finally:
        sup.stop()
        proc.stop(timeout=2)


def test_status_prints_every_process_of_the_running_mesh(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proc = _Forker(workdir=tmp_path / "forker")
    proc.start()
    sup = Supervisor(tmp_path / "status.json", status_interval_s=0.05, health_interval_s=0.05)
    sup.watch(proc)
    sup.start()
    try:
        (tmp_path / "mesh.json").write_text(json.dumps({"pid": os.getpid(), "target": "127.0.0.1:1"}))
        wait_until(lambda: sup.snapshot()["processes"][0]["health"] == "SERVING", 5, "probed")
        wait_until(lambda: "SERVING" in (tmp_path / "status.json").read_text(), 5, "status written")
        assert cli_main(["status", "--state-dir", str(tmp_path)]) == 0
        out = capsys.readouterr().out
        assert "forker" in out and str(proc.pid) in out and "SERVING" in out
        assert cli_main(["status", "--state-dir", str(tmp_path), "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert [p["name"] for p in doc["processes"]] == ["forker"] and doc["processes"][0]["restarts"] == 0
    finally:
        sup.stop()
        proc.stop(timeout=2)
