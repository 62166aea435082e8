"""Markdown tables from a scenario's result dict (what bench.run writes as JSON)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# The predmesh system each group's ratios are taken against: the first of these that ran.
REFERENCES = {
    "end-to-end": ["predmesh-full", "predmesh-gw+log", "predmesh-gateway"],
    "model": ["predmesh-orchestrator"],
    "features": ["predmesh-features"],
}


def reference_of(group: str, ran: dict[str, Any]) -> str:
    return next((key for key in REFERENCES.get(group, []) if key in ran), "")


def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.{digits}f}"
    return str(value)


def _ratio(a: Any, b: Any) -> str:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or not b or a != a or b != b:
        return "-"
    return f"{a / b:.2f}x"


def _errors(row: dict[str, Any]) -> str:
    if row.get("error"):
        return "run failed: " + str(row["error"])[:80]
    errors = row.get("errors") or {}
    return ", ".join(f"{k} {v}" for k, v in errors.items()) or "0"


def _spread(row: dict[str, Any]) -> str:
    """(min-max) of throughput over repeated rounds, when there were several."""
    values = [r["throughput"] for r in row.get("runs", []) if isinstance(r.get("throughput"), int | float)]
    if len(values) < 2:
        return ""
    return f" ({min(values):,.0f}-{max(values):,.0f})"


def _late(row: dict[str, Any]) -> str:
    """Open-loop sends issued > 2 ms after their intended time: client-side lag (CPU contention)."""
    if not row or not row.get("sent"):
        return "-"
    return f"{100.0 * row.get('late_sends', 0) / row['sent']:.0f}%"


def _machine(result: dict[str, Any]) -> list[str]:
    m = result.get("machine", {})
    return [
        f"Machine: {m.get('cpus')} CPUs ({m.get('cpu_model')}), Python {m.get('python')}, "
        f"load average at start {tuple(round(x, 2) for x in m.get('loadavg_at_start', ()))}.",
        f"Command: `{result.get('command')}`",
        "",
    ]


def _runs(row: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list((row or {}).get("runs") or [])


def _per_round(
    a: dict[str, Any] | None, b: dict[str, Any] | None, value: Callable[[dict[str, Any], dict[str, Any]], Any]
) -> list[Any]:
    """`value(run_a, run_b)` for each round both rows ran (None where a run failed)."""
    out = []
    for ra, rb in zip(_runs(a), _runs(b), strict=False):
        try:
            out.append(value(ra, rb) if not ra.get("error") and not rb.get("error") else None)
        except (KeyError, TypeError, ZeroDivisionError):
            out.append(None)
    return out


def _median(values: list[Any]) -> float | None:
    nums = sorted(v for v in values if isinstance(v, int | float) and v == v)
    return nums[(len(nums) - 1) // 2] if nums else None


MUST_FULL, MUST_FASTAPI = "predmesh-full", "fastapi-naive"


def must_show(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's must-show criteria, each with its value per round and the median.

    Rows: {"what", "target", "rounds": [value per round], "median", "met": bool | None}
    (None = could not be measured in this run). Ratios are taken round by round between
    runs measured minutes apart in the same round-robin pass.
    """
    closed = {row["system"]: row for row in result.get("closed", [])}
    opened = {row["system"]: row for row in result.get("open", [])}
    single = {row["system"]: row for row in result.get("single", [])}
    full, fastapi = closed.get(MUST_FULL), closed.get(MUST_FASTAPI)
    out: list[dict[str, Any]] = []

    def add(what: str, target: str, rounds: list[Any], ok: Callable[[float], bool]) -> None:
        med = _median(rounds)
        out.append(
            {
                "what": what,
                "target": target,
                "rounds": rounds,
                "median": med,
                "met": ok(med) if med is not None else None,
            }
        )

    add(
        "full path max req/s / FastAPI's",
        ">= 1.5x",
        _per_round(full, fastapi, lambda a, b: a["throughput"] / b["throughput"]),
        lambda v: v >= 1.5,
    )
    add(
        f"full path CPU per prediction (all server processes) at {result.get('concurrency')} in flight, us",
        "<= 1500",
        [(r.get("cpu_us") or {}).get("servers") for r in _runs(full)],
        lambda v: v <= 1500,
    )
    add(
        "full path open-loop p99 at half FastAPI's max, ms",
        "<= 25",
        [(r.get("latency_ms") or {}).get("p99") for r in _runs(opened.get(MUST_FULL))],
        lambda v: v <= 25,
    )
    add(
        "full path p50 - FastAPI p50 at 1 in flight, ms",
        "<= 2",
        _per_round(
            single.get(MUST_FULL),
            single.get(MUST_FASTAPI),
            lambda a, b: a["latency_ms"]["p50"] - b["latency_ms"]["p50"],
        ),
        lambda v: v <= 2,
    )
    add(
        "orchestrator max req/s / MLServer's",
        ">= 1.2x",
        _per_round(
            closed.get("predmesh-orchestrator"), closed.get("mlserver"), lambda a, b: a["throughput"] / b["throughput"]
        ),
        lambda v: v >= 1.2,
    )
    add(
        "features max req/s / Feast's",
        ">= 3x",
        _per_round(
            closed.get("predmesh-features"), closed.get("feast-server"), lambda a, b: a["throughput"] / b["throughput"]
        ),
        lambda v: v >= 3,
    )
    diffs = result.get("score_check", {}).get("max_abs_diff", {})
    exact = [v == 0.0 for v in diffs.values()]
    out.append(
        {
            "what": f"scores equal to the gateway's to the last bit ({len(diffs)} systems)",
            "target": "all 0.0",
            "rounds": [],
            "median": float(sum(exact)),
            "met": bool(exact) and all(exact),
        }
    )
    degraded = [(r.get("errors") or {}).get("DEGRADED", 0) for row in result.get("closed", []) for r in _runs(row)]
    out.append(
        {
            "what": "DEGRADED answers in throughput runs (all rows, all rounds)",
            "target": "0",
            "rounds": [],
            "median": float(sum(degraded)),
            "met": bool(degraded) and sum(degraded) == 0,
        }
    )
    return out


def _cpu_table(result: dict[str, Any]) -> list[str]:
    from bench.systems import COLUMNS

    shown = [c for c in COLUMNS if c != "client"]
    lines = [
        f"CPU microseconds per successful request, by process, from /proc over the measured window of the "
        f"closed-loop run shown above ({result['concurrency']} in flight; median round). `servers` sums every "
        "process but the load generator (`client`). Configuration of the predmesh rows: shadow, prediction "
        "logging, tracing, gateway coalescing settings.",
        "",
        "| system | " + " | ".join(shown) + " | **servers** | client | shadow | logging | tracing | coalescing |",
        "|---|" + "---:|" * (len(shown) + 2) + "---|---|---|---|",
    ]
    for row in result["closed"]:
        cpu = row.get("cpu_us") or {}
        cfg = row.get("config") or {}
        cells = [_f(cpu.get(c), 0) if c in cpu else "" for c in shown]
        degraded = (row.get("errors") or {}).get("DEGRADED", 0)
        # Degraded answers used CPU in the window but are not successes: the row's figure is inflated.
        flag = f" (inflated: {degraded} DEGRADED answers not counted)" if degraded else ""
        lines.append(
            f"| {row.get('label', row['system'])}{flag} | "
            + " | ".join(cells)
            + f" | **{_f(cpu.get('servers'), 0)}** | {_f(cpu.get('client'), 0)} | "
            + " | ".join(cfg.get(k, "-") for k in ("shadow", "logging", "tracing", "coalescing"))
            + " |"
        )
    return lines


def _must_table(result: dict[str, Any]) -> list[str]:
    rows = must_show(result)
    n = max((len(r["rounds"]) for r in rows), default=0)
    lines = [
        "| must show | target | " + " | ".join(f"round {i + 1}" for i in range(n)) + " | median | met |",
        "|---|---|" + "---:|" * n + "---:|---|",
    ]
    for r in rows:
        rounds = [_f(v) for v in r["rounds"]] + [""] * (n - len(r["rounds"]))
        met = {True: "yes", False: "**no**", None: "not measured"}[r["met"]]
        lines.append(f"| {r['what']} | {r['target']} | " + " | ".join(rounds) + f" | {_f(r['median'])} | {met} |")
    return lines


def render_compare(result: dict[str, Any]) -> str:
    closed = {row["system"]: row for row in result["closed"]}
    opened = {row["system"]: row for row in result["open"]}
    rates = result.get("open_rates") or {k: result.get("open_rate") for k in closed}
    lines = [f"## Side by side: model `{result['model']}`", "", *_machine(result)]
    lines += [
        f"Closed loop: {result['concurrency']} requests in flight, {result['duration_s']:.0f} s; "
        f"open loop: Poisson arrivals at the row's rate for {result['duration_s']:.0f} s "
        "(end to end: half FastAPI's max; other groups: half the group's slowest max), "
        f"latency from the intended send time; {result['client_procs']} client process(es); "
        f"{result.get('repeat', 1)} round(s) round robin, median run shown (range of max req/s in brackets). "
        "Ratios (x ref) are against the group's reference, marked **ref** "
        "(x > 1 = more throughput / more latency). "
        + (
            "While a row is measured, every other system's processes are paused (SIGSTOP, `bench/pause.py`)."
            if result.get("others_paused")
            else "Every system's processes stay running during every row (their idle CPU competes)."
        ),
        "",
        "| group | system | max req/s | x ref | CPU us/req | open req/s | p50 ms | p99 ms | p99.9 ms | p50 x ref "
        "| p99 x ref | late sends | errors (closed / open) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, row in closed.items():
        group = row.get("group", "")
        ref = reference_of(group, closed)
        op = opened.get(key, {})
        ref_c, ref_o = closed.get(ref, {}), opened.get(ref, {})
        lat, ref_lat = op.get("latency_ms", {}), ref_o.get("latency_ms", {})
        lines.append(
            f"| {group} | {row.get('label', key)}{' **ref**' if key == ref else ''} | "
            f"{_f(row.get('throughput'), 0)}{_spread(row)} | "
            f"{_ratio(row.get('throughput'), ref_c.get('throughput'))} | "
            f"{_f((row.get('cpu_us') or {}).get('servers'), 0)} | {_f(rates.get(key), 0)} | "
            f"{_f(lat.get('p50'))} | {_f(lat.get('p99'))} | {_f(lat.get('p99.9'))} | "
            f"{_ratio(lat.get('p50'), ref_lat.get('p50'))} | {_ratio(lat.get('p99'), ref_lat.get('p99'))} | "
            f"{_late(op)} | {_errors(row)} / {_errors(op) if op else '-'} |"
        )
    lines += ["", *_cpu_table(result), ""]
    if result.get("single"):
        lines += [
            "At 1 request in flight (closed loop, end-to-end rows; median round):",
            "",
            "| system | p50 ms | p99 ms | CPU us/req (servers) |",
            "|---|---:|---:|---:|",
        ]
        for row in result["single"]:
            lat = row.get("latency_ms", {})
            lines.append(
                f"| {row.get('label', row['system'])} | {_f(lat.get('p50'))} | {_f(lat.get('p99'))} | "
                f"{_f((row.get('cpu_us') or {}).get('servers'), 0)} |"
            )
        lines.append("")
    lines += ["Must show (issue #13), round by round:", "", *_must_table(result), ""]
    scores = result.get("score_check", {}).get("max_abs_diff", {})
    if scores:
        lines.append(
            "Score agreement with the gateway (max |P(fraud) difference| over 5 transactions): "
            + ", ".join(f"{k} {_f(v, 7) if isinstance(v, float) else v}" for k, v in scores.items())
        )
    sdk = result.get("feast_setup", {}).get("sdk")
    if sdk:
        lines.append(
            f"Feast SDK in-process `get_online_features` (1 entity, sequential, {sdk['calls']} calls): "
            f"{sdk['per_s_one_thread']:.0f} calls/s, p50 {sdk['p50_ms']:.2f} ms, p99 {sdk['p99_ms']:.2f} ms."
        )
    if result.get("unavailable"):
        lines += ["", "Not run:"]
        lines += [f"- {k}: {v}" for k, v in result["unavailable"].items()]
    return "\n".join(lines) + "\n"


def render_scaling(result: dict[str, Any]) -> str:
    lines = ["## Throughput vs processes", "", *_machine(result)]
    lines += [
        f"Closed loop, {result['concurrency']} in flight, {result['duration_s']:.0f} s, "
        f"{result['client_procs']} client process(es); replicas share one Redis.",
        "",
        "| path | processes | max req/s | x (1 process) | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    base: dict[str, float] = {}
    for row in result["rows"]:
        if row["replicas"] == 1 and "throughput" in row:
            base[row["label"]] = row["throughput"]
        lat = row.get("latency_ms", {})
        lines.append(
            f"| {row['label']} | {row['replicas']} | {_f(row.get('throughput'), 0)} | "
            f"{_ratio(row.get('throughput'), base.get(row['label']))} | {_f(lat.get('p50'))} | "
            f"{_f(lat.get('p99'))} | {_errors(row)} |"
        )
    return "\n".join(lines) + "\n"


def render_batch(result: dict[str, Any]) -> str:
    lines = ["## PredictBatch size vs predictions/s", "", *_machine(result)]
    lines += [
        f"Closed loop, {result['concurrency']} calls in flight, {result['duration_s']:.0f} s per size.",
        "",
        "| entities per call | calls/s | predictions/s | x (size 1) | p50 ms/call | p99 ms/call | errors |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    base = None
    for row in result["rows"]:
        if base is None and "items_per_s" in row:
            base = row["items_per_s"]
        lat = row.get("latency_ms", {})
        lines.append(
            f"| {row['batch_size']} | {_f(row.get('throughput'), 0)} | {_f(row.get('items_per_s'), 0)} | "
            f"{_ratio(row.get('items_per_s'), base)} | {_f(lat.get('p50'))} | {_f(lat.get('p99'))} | "
            f"{_errors(row)} |"
        )
    return "\n".join(lines) + "\n"


def render(result: dict[str, Any]) -> str:
    return {"compare": render_compare, "scaling": render_scaling, "batch": render_batch}[result["scenario"]](result)
