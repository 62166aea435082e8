"""bench.cpu: /proc stat parsing, per-session CPU of real processes, interpolation over a window."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from bench import cpu

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\ntime.sleep(30)\n"


def test_parse_stat_with_spaces_and_parens_in_the_name() -> None:
    fields = ["S", "7", "8", "99"] + ["0"] * 7 + [str(3 * cpu.CLOCK_TICKS), str(cpu.CLOCK_TICKS)] + ["0"] * 30
    text = "1234 (a (weird) name) " + " ".join(fields)
    ppid, session, seconds = cpu.parse_stat(text)
    assert (ppid, session, seconds) == (7, 99, pytest.approx(4.0))


@pytest.fixture
def burner() -> Iterator[subprocess.Popen[bytes]]:
    """A session leader that burns ~0.4 s of CPU, then sleeps."""
    proc = subprocess.Popen([sys.executable, "-c", BURN], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def test_snapshot_counts_a_session_and_classify_renames_it(burner: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while cpu.snapshot({"burn": [burner.pid]})["burn"] < 0.3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cpu.snapshot({"burn": [burner.pid]})["burn"] >= 0.3
    split = cpu.snapshot({"burn": [burner.pid]}, classify=lambda part, cmdline: "py" if "python" in cmdline else part)
    assert split.get("py", 0.0) >= 0.3
    assert cpu.snapshot({"nobody": [2**22 + 1]}) == {"nobody": 0.0}


def test_sampler_attributes_cpu_to_the_window_it_was_spent_in(burner: subprocess.Popen[bytes]) -> None:
    with cpu.CpuSampler({"burn": [burner.pid]}, interval_s=0.02) as sampler:
        deadline = time.monotonic() + 20
        while cpu.snapshot({"burn": [burner.pid]})["burn"] < 0.39 and time.monotonic() < deadline:
            time.sleep(0.05)
    (first, at_first), (last, at_last) = sampler.samples[0], sampler.samples[-1]
    assert len(sampler.samples) >= 2
    assert sampler.between(first, last)["burn"] == pytest.approx(at_last["burn"] - at_first["burn"])
    assert sampler.between(first, last)["burn"] >= 0.3
    middle = (first + last) / 2
    assert sampler.between(middle, middle)["burn"] == 0.0
    assert sampler.between(first - 10, first)["burn"] == 0.0  # before the first sample: nothing known


def test_interpolate_and_per_request() -> None:
    samples = [(10.0, {"a": 1.0}), (12.0, {"a": 3.0, "b": 2.0})]
    assert cpu.interpolate(samples, 11.0) == {"a": 2.0, "b": 1.0}
    assert cpu.interpolate(samples, 5.0) == {"a": 1.0}
    assert cpu.interpolate(samples, 15.0) == {"a": 3.0, "b": 2.0}
    assert cpu.interpolate([], 1.0) == {}
    assert cpu.per_request_us({"a": 0.5, "b": 0.25}, 1000) == {"a": 500.0, "b": 250.0}
    assert cpu.per_request_us({"a": 0.5}, 0) == {}
