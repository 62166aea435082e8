"""How much a low-priority background workload costs real-time latency, by kind of workload and by
scheduling mechanism (not a test; issue #18).

    python -m bench.isolation [--modes job,job:nice,burners,job:batch] [--rounds 3] [--duration 12]
                              [--rate 100] [--burners 2]

One local mesh with the background tier (`MeshOptions.background_tier`: a gateway, features and
orchestrator of its own at `BACKGROUND_NICENESS`, task and autogroup, and in an idle cpu cgroup where
the host allows one, predmesh/local/cpugroup.py; `bench.mesh.bench_options`
otherwise: plaintext Envoy edge, ORT in the orchestrator, no logger). `--rounds` times, each mode in
turn (interleaved, so that a slow drift of the box hits every mode alike): open-loop Predict through
Envoy at `--rate` for `--duration` seconds **alone**, then **with** the mode's background work (a
policy applies only during that phase and is undone after it):

- `job`: a server-side batch job scored by the tier at full speed (1,024 rows per call, no pace), the
  tier as the mesh runs it;
- `job:nice`: the same, with the tier moved out of its idle cpu cgroup (nice and autogroup nice alone,
  how the mesh ran it before the group);
- `job:batch`: the job, every thread of the tier also under SCHED_BATCH (its wake-ups never preempt);
- `burners`: `--burners` CPU-bound processes (`while True: pass`), no job, at the tier's nice
  (`predmesh.local.procs.lower_priority`, no cgroup): pure CPU demand, no I/O, no wake-ups.

Per phase: p50/p99 (from the intended send time), the p99 ratio with/alone, the job's rows/s, and per
real-time part the CPU time and the run-queue wait (`/proc/<pid>/task/*/schedstat`: time runnable but
not running) per request: what the background work makes the real-time path wait for.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench import batch_jobs
from predmesh.local.mesh import BACKGROUND_NICENESS, LocalMesh
from predmesh.local.procs import lower_priority
from predmesh.v1 import batchjobs_pb2_grpc


def threads(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def schedstat(pids: Sequence[int]) -> tuple[int, int]:
    """(ns on a CPU, ns runnable but waiting) summed over every thread of `pids`."""
    run = wait = 0
    for pid in pids:
        for tid in threads(pid):
            with contextlib.suppress(OSError, ValueError):
                on_cpu, waiting, _ = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
                run, wait = run + int(on_cpu), wait + int(waiting)
    return run, wait


def apply_policy(policy: str, mesh: LocalMesh) -> str:
    """Put every thread of the tier under `policy` ('' = as the mesh runs it); a reason if it cannot."""
    tier = [p.pid or 0 for p in mesh.background]
    if policy == "batch":
        for pid in tier:
            for tid in threads(pid):
                os.sched_setscheduler(tid, os.SCHED_BATCH, os.sched_param(0))
    elif policy == "nice":
        group = mesh.background_group
        if group is None:
            return "the mesh runs the tier on nice alone already (no idle cpu cgroup on this host)"
        for pid in tier:
            (group.path.parent / "cgroup.procs").write_text(f"{pid}\n")
    return ""


def undo_policy(policy: str, mesh: LocalMesh) -> None:
    """Back to how the mesh runs the tier."""
    for proc in mesh.background:
        with contextlib.suppress(OSError):
            if policy == "batch":
                for tid in threads(proc.pid or 0):
                    os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
            elif policy == "nice" and mesh.background_group is not None:
                mesh.background_group.add(proc.pid or 0)


@contextlib.contextmanager
def burners(count: int) -> Iterator[list[int]]:
    """`count` CPU-bound processes at the tier's priority during the block (their pids); killed after."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True) for _ in range(count)]
    try:
        for proc in procs:
            lower_priority(proc.pid, BACKGROUND_NICENESS)
        yield [proc.pid for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def job(mesh: LocalMesh, source: Path, round_: int, progress: dict[str, float]) -> Iterator[None]:
    """The tier's batch job running during the block (bench.batch_jobs.running_job); its rows/s in progress."""
    with mesh.edge_channel() as channel:
        jobs = batchjobs_pb2_grpc.BatchJobServiceStub(channel)
        target = mesh.batch_dir / f"out-{round_}-{time.time_ns()}.parquet"
        with batch_jobs.running_job(jobs, source, target, 4096, progress):
            yield


def phase(mesh: LocalMesh, args: argparse.Namespace, seed: int) -> tuple[Any, dict[str, tuple[float, float]]]:
    """The load result and, per real-time part, (CPU us, run-queue wait us) per request."""
    parts = batch_jobs.sessions(mesh)
    parts.pop("background", None)
    before = {name: schedstat(pids) for name, pids in parts.items()}
    result, _, _ = batch_jobs.realtime(mesh, args, seed)
    after = {name: schedstat(pids) for name, pids in parts.items()}
    n = max(1, result.ok)
    return result, {
        name: ((after[name][0] - before[name][0]) / n / 1e3, (after[name][1] - before[name][1]) / n / 1e3)
        for name in parts
    }


def line(mode: str, round_: int, label: str, result: Any, waits: dict[str, tuple[float, float]], extra: str) -> str:
    lat = result.latency_ms
    errors = sum(result.errors.values()) if result.errors else 0
    parts = ", ".join(f"{k} {run:.0f}/{wait:.0f}" for k, (run, wait) in waits.items())
    return (
        f"{mode:10s} round {round_} {label:5s} ok {result.ok:5d} err {errors:3d}  p50 {lat['p50']:6.2f} ms  "
        f"p99 {lat['p99']:7.2f} ms{extra}  us/req CPU/run-queue wait: {parts}  load {os.getloadavg()[0]:.1f}"
    )


def run_round(mesh: LocalMesh, mode: str, round_: int, args: argparse.Namespace, source: Path) -> None:
    """One pair of phases, alone then with the mode's background work (its policy only meanwhile)."""
    kind, _, policy = mode.partition(":")
    alone, waits = phase(mesh, args, seed=round_ * 2 + 1)
    print(line(mode, round_, "alone", alone, waits, ""), flush=True)
    reason = apply_policy(policy, mesh)
    if reason:
        print(f"{mode}: skipped, {reason}", flush=True)
        return
    measured: dict[str, float] = {}
    try:
        background = burners(args.burners) if kind == "burners" else job(mesh, source, round_, measured)
        with background:
            loaded, waits = phase(mesh, args, seed=round_ * 2 + 2)
    finally:
        undo_policy(policy, mesh)
    ratio = loaded.latency_ms["p99"] / alone.latency_ms["p99"] if alone.latency_ms["p99"] > 0 else 0.0
    rows = f"  job {measured['rows_per_s']:,.0f} rows/s" if measured else ""
    print(line(mode, round_, "with", loaded, waits, f"  ratio {ratio:.2f}x{rows}"), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.isolation")
    parser.add_argument(
        "--modes", default="job,burners", help="job, burners, job:nice, job:batch (interleaved per round)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=12.0)
    parser.add_argument("--rate", type=float, default=100.0, help="real-time Predict requests/s (open loop)")
    parser.add_argument("--burners", type=int, default=2, help="CPU-bound processes in the burners mode")
    parser.add_argument("--background-rows", type=int, default=400_000)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="isolation-bench-"))
    print(f"cores {os.cpu_count()}, load average {os.getloadavg()}", flush=True)
    options = batch_jobs.job_mesh_options(
        work,
        True,
        {
            "PREDMESH_GATEWAY_BATCH_ITEMS_PER_CALL": "1024",
            "PREDMESH_GATEWAY_BATCH_PACE": "false",
            "PREDMESH_GATEWAY_BATCH_DUTY_CYCLE": "1",
            "PREDMESH_GATEWAY_BATCH_YIELD_MAX_MS": "0",
        },
    )
    with LocalMesh(options) as mesh:
        source = mesh.batch_dir / "background.parquet"
        batch_jobs.write_input(source, args.background_rows)
        for round_ in range(args.rounds):  # the modes interleaved: a slow drift of the box hits them alike
            for mode in args.modes.split(","):
                run_round(mesh, mode, round_, args, source)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
