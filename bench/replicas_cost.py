"""CPU per prediction with 1 vs 2 replicas of each service (not a test; run by hand).

    python -m bench.replicas_cost [--rounds 12] [--window 4] [--rate 40] [--json out.json]

Built to survive a shared, loaded box (the first version, one 5 s closed-loop run per mesh
start, was inconclusive: the load moved between the two runs, and overloaded runs answered
from the fallback chain, inflating CPU per success):

- both meshes run side by side for the whole measurement (`bench.mesh.bench_options`:
  plaintext edge, no mTLS, no logger, ORT in process, features cache off): A = 1 replica of
  gateway, features and inference; B = `--replicas gateway=2,features=2,inference=2`;
- many short windows alternate A, B, A, B... (the order flips every round: ABBA), so a change
  of the background load hits both about equally, and each round gives a paired ratio B/A;
- a fixed open-loop rate (`--rate`, constant arrivals) that both sustain: each window serves
  the same requests, so CPU per successful prediction compares like with like. A window with
  any DEGRADED answer or error is reported and left out of the summary (it measures the
  fallback chain, not the path);
- CPU of every process of the measured mesh from /proc (`bench.cpu`), per service, over the
  window; with it the box's 1-minute load average and the busy fraction of all CPUs
  (/proc/stat) during the window;
- the idle cost (CPU per second of each mesh with no load, measured before the rounds) is
  reported too: a replica's fixed cost (health checks, Envoy and Redis timers) is real
  capacity but not a per-prediction cost, so the summary shows both the total CPU per
  prediction and the marginal one (window CPU minus the mesh's idle CPU for that long).

Summary: per configuration the median and interquartile range over the kept windows, and the
median (and range) of the paired B/A ratios. "Flat within noise" = the paired ratios' IQR
contains 1.0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench import loadgen
from bench.cpu import CpuSampler
from bench.loadgen import LoadSpec, TargetSpec
from bench.mesh import bench_options
from predmesh.local.mesh import LocalMesh
from predmesh.local.procs import free_port

SERVICES = ("edge", "gateway", "features", "orchestrator", "redis")
GATEWAY_METRICS_PORT = "PREDMESH_GATEWAY_METRICS_PORT"


@dataclass
class Window:
    """One measured window of one configuration."""

    round: int
    replicas: int
    ok: int
    errors: dict[str, int]
    cpu_s: dict[str, float]  # per service, over the window
    seconds: float
    p50_ms: float
    p99_ms: float
    load1: float  # 1-minute load average at the window's end
    box_busy: float  # fraction of all CPUs busy during the window (/proc/stat)
    idle_cpu_s: float = 0.0  # the mesh's idle CPU for `seconds` (from its idle rate)
    rows_per_batch: float = float("nan")  # mean rows per coalesced primary batch over all gateways

    @property
    def clean(self) -> bool:
        return self.ok > 0 and not self.errors

    @property
    def us_per_prediction(self) -> float:
        return sum(self.cpu_s.values()) / self.ok * 1e6 if self.ok else float("nan")

    @property
    def marginal_us_per_prediction(self) -> float:
        return (sum(self.cpu_s.values()) - self.idle_cpu_s) / self.ok * 1e6 if self.ok else float("nan")


@dataclass
class Summary:
    kept: dict[int, int] = field(default_factory=dict)  # replicas -> clean windows
    dropped: dict[int, int] = field(default_factory=dict)
    total: dict[int, tuple[float, float, float]] = field(default_factory=dict)  # (p25, median, p75)
    marginal: dict[int, tuple[float, float, float]] = field(default_factory=dict)
    per_service: dict[int, dict[str, float]] = field(default_factory=dict)  # median us/prediction
    rows_per_batch: dict[int, float] = field(default_factory=dict)  # median over clean windows
    ratios: list[float] = field(default_factory=list)  # paired B/A total per round, clean pairs only
    marginal_ratios: list[float] = field(default_factory=list)


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(p25, median, p75); a single value repeats; empty -> NaNs."""
    if not values:
        nan = float("nan")
        return nan, nan, nan
    if len(values) == 1:
        return values[0], values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[1], q[2]


def summarize(windows: Sequence[Window]) -> Summary:
    """Medians and spreads over clean windows, and paired B/A ratios per round (module docstring)."""
    out = Summary()
    for replicas in sorted({w.replicas for w in windows}):
        mine = [w for w in windows if w.replicas == replicas]
        clean = [w for w in mine if w.clean]
        out.kept[replicas] = len(clean)
        out.dropped[replicas] = len(mine) - len(clean)
        out.total[replicas] = quartiles([w.us_per_prediction for w in clean])
        out.marginal[replicas] = quartiles([w.marginal_us_per_prediction for w in clean])
        out.per_service[replicas] = {
            s: statistics.median(w.cpu_s.get(s, 0.0) / w.ok * 1e6 for w in clean) for s in SERVICES if clean
        }
        sizes = [w.rows_per_batch for w in clean if w.rows_per_batch == w.rows_per_batch]
        out.rows_per_batch[replicas] = statistics.median(sizes) if sizes else float("nan")
    by_round: dict[int, dict[int, Window]] = {}
    for w in windows:
        by_round.setdefault(w.round, {})[w.replicas] = w
    for pair in by_round.values():
        a, b = pair.get(1), pair.get(2)
        if a is not None and b is not None and a.clean and b.clean:
            out.ratios.append(b.us_per_prediction / a.us_per_prediction)
            out.marginal_ratios.append(b.marginal_us_per_prediction / a.marginal_us_per_prediction)
    return out


def _box_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def _sessions(mesh: LocalMesh) -> dict[str, list[int]]:
    assert mesh.envoy is not None and mesh.redis is not None
    return {
        "edge": [mesh.envoy.pid or 0],
        "gateway": [g.pid or 0 for g in mesh.gateways],
        "features": [f.pid or 0 for f in mesh.features_replicas],
        "orchestrator": [i.pid or 0 for i in mesh.inference_replicas],
        "redis": [mesh.redis.pid or 0],
    }


def _options(replicas: int, state: Path) -> Any:
    return dataclasses.replace(
        bench_options(state, logging_on=False, edge=True),
        gateway_replicas=replicas,
        features_replicas=replicas,
        inference_replicas=replicas,
        supervise=False,
        extra_env={"PREDMESH_FEATURES_CACHE_TTL_MS": "0", GATEWAY_METRICS_PORT: str(free_port())},
    )


def _batch_rows(mesh: LocalMesh) -> tuple[float, float]:
    """(rows, batches) of the coalesced primary path so far, summed over the mesh's gateways."""
    rows = batches = 0.0
    for gateway in mesh.gateways:
        port = gateway.environment()[GATEWAY_METRICS_PORT]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.labels.get("path") != "primary":
                    continue
                if sample.name == "predmesh_gateway_batch_rows_sum":
                    rows += sample.value
                elif sample.name == "predmesh_gateway_batch_rows_count":
                    batches += sample.value
    return rows, batches


def _idle_rate(sampler: CpuSampler, seconds: float) -> float:
    """CPU seconds per second the mesh spends with no load."""
    t0 = time.time()
    time.sleep(seconds)
    return sum(sampler.between(t0, time.time()).values()) / seconds


def _window(
    round_: int, replicas: int, mesh: LocalMesh, sampler: CpuSampler, idle_rate: float, args: argparse.Namespace
) -> Window:
    target = TargetSpec("bench.targets:make_predict", {"address": mesh.edge_address, "model": "fraud"}, 1)
    spec = LoadSpec(mode="open", rate=args.rate, duration_s=args.window, warmup_requests=args.warmup, drain_s=3.0)
    busy0, rows0 = _box_jiffies(), _batch_rows(mesh)
    result = loadgen.run(target, spec)
    busy1, rows1 = _box_jiffies(), _batch_rows(mesh)
    batches = rows1[1] - rows0[1]
    t0, t1 = result.window
    seconds = max(t1 - t0, 1e-9)
    box_busy = (busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1)  # includes the warm-up: indicative
    return Window(
        round=round_,
        replicas=replicas,
        ok=result.ok,
        errors={k: v for k, v in result.errors.items() if v},
        cpu_s=sampler.between(t0, t1),
        seconds=seconds,
        p50_ms=result.latency_ms["p50"],
        p99_ms=result.latency_ms["p99"],
        load1=os.getloadavg()[0],
        box_busy=box_busy,
        idle_cpu_s=idle_rate * seconds,
        rows_per_batch=(rows1[0] - rows0[0]) / batches if batches else float("nan"),
    )


def _print_window(w: Window) -> None:
    services = "".join(f" {s} {w.cpu_s.get(s, 0.0) / w.ok * 1e6 if w.ok else float('nan'):6.0f}" for s in SERVICES)
    flag = "" if w.clean else f"  DROPPED {w.errors}"
    print(
        f"round {w.round:2d} replicas={w.replicas} ok {w.ok:4d} p50 {w.p50_ms:6.1f} p99 {w.p99_ms:6.1f} ms"
        f"  us/pred {w.us_per_prediction:6.0f} (marginal {w.marginal_us_per_prediction:6.0f}){services}"
        f"  rows/batch {w.rows_per_batch:4.2f}  load {w.load1:4.1f} busy {w.box_busy:4.0%}{flag}",
        flush=True,
    )


def render(summary: Summary, idle: Mapping[int, float]) -> str:
    lines = ["", "replicas | clean/dropped | CPU us/pred p25 / median / p75 | marginal median | idle CPU ms/s"]
    for r in sorted(summary.total):
        p25, med, p75 = summary.total[r]
        lines.append(
            f"{r} | {summary.kept[r]}/{summary.dropped[r]} | {p25:.0f} / {med:.0f} / {p75:.0f}"
            f" | {summary.marginal[r][1]:.0f} | {idle.get(r, float('nan')) * 1000:.0f}"
        )
        lines.append(
            "    per service (median us/pred): " + ", ".join(f"{k} {v:.0f}" for k, v in summary.per_service[r].items())
        )
        size = summary.rows_per_batch.get(r, float("nan"))
        lines.append(f"    rows per coalesced primary batch (median): {size:.2f}")
    for name, ratios in (("total", summary.ratios), ("marginal", summary.marginal_ratios)):
        if ratios:
            p25, med, p75 = quartiles(ratios)
            lines.append(
                f"paired 2/1 ratio ({name}, {len(ratios)} rounds): median {med:.2f}, IQR {p25:.2f}-{p75:.2f},"
                f" range {min(ratios):.2f}-{max(ratios):.2f}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replicas_cost")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--window", type=float, default=4.0, help="seconds measured per window")
    parser.add_argument("--rate", type=float, default=40.0, help="open-loop Predict/s, the same for both")
    parser.add_argument("--warmup", type=int, default=40, help="requests before each window (not measured)")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle CPU measured per mesh")
    parser.add_argument("--json", type=Path, default=None, help="write every window and the summary here")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="replicas-cost-"))
    windows: list[Window] = []
    with LocalMesh(_options(1, work / "one")) as one, LocalMesh(_options(2, work / "two")) as two:
        meshes = {1: one, 2: two}
        samplers = {r: CpuSampler(_sessions(m)).start() for r, m in meshes.items()}
        try:
            idle = {r: _idle_rate(samplers[r], args.idle) for r in meshes}
            print("idle CPU ms/s: " + ", ".join(f"{r} replicas {v * 1000:.0f}" for r, v in idle.items()), flush=True)
            for round_ in range(args.rounds):
                order = (1, 2) if round_ % 2 == 0 else (2, 1)
                for r in order:
                    window = _window(round_, r, meshes[r], samplers[r], idle[r], args)
                    windows.append(window)
                    _print_window(window)
        finally:
            for sampler in samplers.values():
                sampler.stop()
    summary = summarize(windows)
    print(render(summary, idle))
    if args.json is not None:
        doc = {
            "args": {k: str(v) for k, v in vars(args).items()},
            "idle_cpu_s_per_s": idle,
            "windows": [dataclasses.asdict(w) for w in windows],
            "summary": dataclasses.asdict(summary),
        }
        args.json.write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
