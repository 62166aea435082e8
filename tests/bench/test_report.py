"""bench.report: the must-show criteria round by round, and the CPU-per-process table."""

from __future__ import annotations

from typing import Any

from bench import report


def _run(throughput: float, p50: float = 5.0, p99: float = 10.0, servers: float = 1000.0, **errors: int) -> dict:
    return {
        "throughput": throughput,
        "latency_ms": {"p50": p50, "p99": p99, "p99.9": p99},
        "errors": errors,
        "error": None,  # as bench.run keeps it for a run that did not fail
        "cpu_us": {"gateway": servers / 2, "features": servers / 2, "servers": servers, "client": 100.0},
    }


def _row(system: str, group: str, runs: list[dict], **extra: Any) -> dict[str, Any]:
    return {"system": system, "label": system, "group": group, **runs[len(runs) // 2], "runs": runs, **extra}


def _result() -> dict[str, Any]:
    closed = [
        _row(
            "predmesh-full",
            "end-to-end",
            [_run(600), _run(500, servers=1400), _run(400, servers=1600)],
            config={"shadow": "v2 at 10%", "logging": "Kafka", "tracing": "off", "coalescing": "on"},
        ),
        _row("fastapi-naive", "end-to-end", [_run(400), _run(500), _run(200)]),
        _row("predmesh-orchestrator", "model", [_run(1300), _run(1200), _run(1100)]),
        _row("mlserver", "model", [_run(1000), _run(1000), _run(1000, DEGRADED=3)]),
        _row("predmesh-features", "features", [_run(3000)] * 3),
        _row("feast-server", "features", [_run(1200)] * 3),
    ]
    opened = [_row("predmesh-full", "end-to-end", [_run(250, p99=20), _run(250, p99=30), _run(250, p99=22)])]
    single = [
        _row("predmesh-full", "end-to-end", [_run(100, p50=3.0), _run(100, p50=4.5), _run(100, p50=3.5)]),
        _row("fastapi-naive", "end-to-end", [_run(100, p50=2.0)] * 3),
    ]
    return {
        "scenario": "compare",
        "model": "fraud:1",
        "machine": {"cpus": 2},
        "command": "python -m bench.run compare --repeat 3",
        "duration_s": 4.0,
        "concurrency": 32,
        "client_procs": 1,
        "repeat": 3,
        "open_rates": {"predmesh-full": 250.0},
        "score_check": {"max_abs_diff": {"envoy": 0.0, "fastapi": 0.0, "ray": 1e-9}},
        "closed": closed,
        "open": opened,
        "single": single,
    }


def test_must_show_ratios_are_taken_round_by_round() -> None:
    rows = {r["what"].split(" (")[0].split(" at ")[0]: r for r in report.must_show(_result())}
    ratio = rows["full path max req/s / FastAPI's"]
    assert ratio["rounds"] == [1.5, 1.0, 2.0] and ratio["median"] == 1.5 and ratio["met"] is True
    cpu = next(r for r in report.must_show(_result()) if r["what"].startswith("full path CPU"))
    assert cpu["rounds"] == [1000.0, 1400.0, 1600.0] and cpu["met"] is True
    p99 = next(r for r in report.must_show(_result()) if "open-loop p99" in r["what"])
    assert p99["median"] == 22 and p99["met"] is True
    single = next(r for r in report.must_show(_result()) if "1 in flight" in r["what"])
    assert single["rounds"] == [1.0, 2.5, 1.5] and single["met"] is True
    orch = rows["orchestrator max req/s / MLServer's"]
    assert orch["median"] == 1.2 and orch["met"] is True
    assert rows["features max req/s / Feast's"]["met"] is False  # 2.5x < 3x
    scores = next(r for r in report.must_show(_result()) if r["what"].startswith("scores"))
    assert scores["met"] is False  # one system differs in the last bits
    degraded = next(r for r in report.must_show(_result()) if r["what"].startswith("DEGRADED"))
    assert degraded["median"] == 3 and degraded["met"] is False


def test_a_criterion_without_its_rows_is_not_measured() -> None:
    result = _result()
    result["closed"] = [r for r in result["closed"] if r["system"] != "feast-server"]
    row = next(r for r in report.must_show(result) if r["what"].startswith("features max"))
    assert row["rounds"] == [] and row["met"] is None


def test_render_compare_has_the_cpu_table_and_the_must_show() -> None:
    text = report.render_compare(_result())
    assert "| system | edge | gateway | features | orchestrator | worker | logger | broker | redis | other |" in text
    assert "| predmesh-full |  | 700 | 700 |" in text  # the median round's CPU by process
    assert "v2 at 10% | Kafka | off | on |" in text
    assert "| predmesh-full |" in text and "| mlserver (inflated: 3 DEGRADED" not in text  # median round has none
    assert "Must show (issue #13), round by round:" in text
    assert "| full path max req/s / FastAPI's | >= 1.5x | 1.50 | 1.00 | 2.00 | 1.50 | yes |" in text
