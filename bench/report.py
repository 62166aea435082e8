"""Markdown tables from a scenario's result dict (what bench.run writes as JSON)."""

from __future__ import annotations

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
    if "error" in row:
        return "run failed: " + row["error"][:80]
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


def render_compare(result: dict[str, Any]) -> str:
    closed = {row["system"]: row for row in result["closed"]}
    opened = {row["system"]: row for row in result["open"]}
    lines = [f"## Side by side: model `{result['model']}`", "", *_machine(result)]
    lines += [
        f"Closed loop: {result['concurrency']} requests in flight, {result['duration_s']:.0f} s; "
        f"open loop: Poisson arrivals at {result['open_rate']:.0f} req/s for {result['duration_s']:.0f} s, "
        f"latency from the intended send time; {result['client_procs']} client process(es); "
        f"{result.get('repeat', 1)} round(s) round robin, median run shown (range of max req/s in brackets). "
        "Ratios (x ref) are against the group's reference, marked **ref** "
        "(x > 1 = more throughput / more latency).",
        "",
        "| group | system | max req/s | x ref | p50 ms | p99 ms | p99.9 ms | p50 x ref | p99 x ref "
        "| late sends | errors (closed / open) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
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
            f"{_f(lat.get('p50'))} | {_f(lat.get('p99'))} | {_f(lat.get('p99.9'))} | "
            f"{_ratio(lat.get('p50'), ref_lat.get('p50'))} | {_ratio(lat.get('p99'), ref_lat.get('p99'))} | "
            f"{_late(op)} | {_errors(row)} / {_errors(op) if op else '-'} |"
        )
    lines.append("")
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
