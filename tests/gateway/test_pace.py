"""The adaptive pace of background work (core/pace.py): AIMD on rows per call and a pause, driven by
real-time latency with and without background work in flight; its wiring into lane admission
(contended requests, shedding client background work at the floor) and into the chunk scorer.
Pure logic: latencies and clocks are numbers handed in, no timing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from predmesh.common.deadline import Deadline
from services.gateway.core.batch_ports import JobSpec
from services.gateway.core.batch_scoring import ChunkScorer, ScoringLimits
from services.gateway.core.pace import Pace, PaceLimits, quantile
from services.gateway.core.priority import LaneAdmission, Priority
from services.gateway.core.types import Arm, PredictInput, PredictOutput, Score, Timings
from services.gateway.errors import DeadlineExceeded, InvalidArgument, ResourceExhausted

LIMITS = PaceLimits(
    min_items=8,
    max_items=256,
    start_items=64,
    increase_items=16,
    tolerance=1.2,
    quantile=0.9,
    window=10,
    baseline_samples=50,
    floor_s=0.001,
    pause_step_s=0.01,
    max_pause_s=0.08,
    idle_s=1.0,
)


def warmed(limits: PaceLimits = LIMITS) -> Pace:
    """A pace whose baseline is 10 ms (uncontended real-time latencies)."""
    pace = Pace(limits)
    for _ in range(limits.baseline_samples):
        pace.observe_realtime(0.010, contended=False, now_s=0.0)
    pace.items, pace.pause_s, pace.overloaded = limits.start_items, 0.0, False
    pace.decisions = dict.fromkeys(pace.decisions, 0)
    return pace


def window(pace: Pace, latency_s: float, contended: bool = True, now_s: float = 0.0) -> None:
    """Real-time requests of one latency until the pace gives one verdict."""
    verdicts = pace.decisions["good"] + pace.decisions["bad"]
    for _ in range(pace.limits.window):
        pace.observe_realtime(latency_s, contended, now_s)
        if pace.decisions["good"] + pace.decisions["bad"] > verdicts:
            return
    raise AssertionError("no verdict after a full window")


def test_quantile_is_nearest_rank() -> None:
    assert quantile([5.0, 1.0, 3.0, 2.0, 4.0], 0.9) == 5.0
    assert quantile([float(i) for i in range(1, 11)], 0.9) == 9.0
    assert quantile([7.0], 0.5) == 7.0


def test_slow_windows_halve_the_rows_then_lengthen_the_pause_then_overload() -> None:
    pace = warmed()
    assert pace.baseline_s() == pytest.approx(0.010)
    sizes = []
    for _ in range(3):
        window(pace, 0.020)  # threshold 12 ms: a little above it
        sizes.append(pace.items)
    assert sizes == [32, 16, 8]
    assert pace.pause_s == 0.0
    pauses = []
    for _ in range(4):
        window(pace, 0.020)
        pauses.append(pace.pause_s)
    assert pauses == pytest.approx([0.01, 0.02, 0.04, 0.08])
    assert not pace.overloaded  # just reached the floor
    window(pace, 0.020)
    assert pace.overloaded and pace.pause_s == pytest.approx(0.08) and pace.items == 8
    # good windows: the pause shrinks first, then the rows grow again
    window(pace, 0.010)
    assert not pace.overloaded and pace.pause_s == pytest.approx(0.04) and pace.items == 8
    for _ in range(3):
        window(pace, 0.010)
    assert pace.pause_s == 0.0 and pace.items == 8
    window(pace, 0.010)
    assert pace.items == 24


def test_far_slower_requests_cut_the_rows_in_proportion() -> None:
    pace = warmed()
    pace.items = 256
    window(pace, 0.048)  # 4x the 12 ms threshold: rows / 4
    assert pace.items == 64
    window(pace, 1.0)  # ~80x: at most / 8
    assert pace.items == 8


def test_latency_within_tolerance_speeds_up_to_the_cap() -> None:
    pace = warmed()
    for _ in range(100):
        window(pace, 0.0115)  # 1.15x the baseline, within 1.2x
    assert pace.items == LIMITS.max_items and pace.pause_s == 0.0
    assert pace.decisions["bad"] == 0


def test_a_clearly_bad_window_is_judged_before_it_is_full() -> None:
    pace = warmed()
    allowed = (
        LIMITS.window - 9
    )  # 9 of 10 at or below the threshold  # samples above the threshold a good window may hold
    for _ in range(allowed):
        pace.observe_realtime(0.020, contended=True, now_s=0.0)
    assert pace.items == 64
    pace.observe_realtime(0.020, contended=True, now_s=0.0)
    assert pace.items == 32 and pace.decisions["bad"] == 1


def test_only_uncontended_requests_make_the_baseline() -> None:
    pace = warmed()
    for _ in range(200):
        pace.observe_realtime(0.100, contended=True, now_s=0.0)
    assert pace.baseline_s() == pytest.approx(0.010)
    assert pace.items == LIMITS.min_items and pace.decisions["good"] == 0
    for _ in range(LIMITS.baseline_samples):
        pace.observe_realtime(0.100, contended=False, now_s=0.0)  # the box got slower for everyone
    assert pace.baseline_s() == pytest.approx(0.100)


def test_the_baseline_has_a_floor() -> None:
    pace = Pace(LIMITS)
    pace.observe_realtime(0.0001, contended=False, now_s=0.0)
    assert pace.baseline_s() == LIMITS.floor_s


def test_without_realtime_traffic_rows_double_per_call() -> None:
    pace = warmed()
    pace.observe_realtime(0.010, contended=False, now_s=10.0)
    pace.items, pace.pause_s = 8, 0.04
    assert pace.next_call(10.5) == (8, 0.04)  # real-time seen 0.5 s ago: no change
    assert pace.next_call(11.0) == (16, 0.0)  # 1 s without real-time: no pause, rows double per call
    assert pace.next_call(11.1) == (32, 0.0)
    assert Pace(LIMITS).next_call(0.0)[0] == 128  # nothing ever seen: idle
    for step in range(20):
        pace.next_call(12.0 + step / 10)
    assert pace.items == LIMITS.max_items
    pace.observe_realtime(0.010, contended=True, now_s=14.5)  # traffic resumes after the gap
    assert (pace.items, pace.pause_s) == (LIMITS.start_items, 0.0)
    for step in range(20):
        pace.next_call(16.0 + step / 10)
    pace.realtime_arrived(18.0)  # admitted, not finished yet: the next call is small already
    assert pace.next_call(18.0) == (LIMITS.start_items, 0.0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_admission_times_realtime_requests_and_marks_background_overlap() -> None:
    seen: list[tuple[float, bool]] = []
    failures: list[bool] = []

    class Recorder(Pace):
        def observe_realtime(self, latency_s: float, contended: bool, now_s: float, failed: bool = False) -> None:
            seen.append((round(latency_s, 6), contended))
            failures.append(failed)

    clock = Clock()
    lanes = LaneAdmission(0, pace=Recorder(LIMITS), clock=clock)
    with lanes.admit(Priority.REALTIME):
        clock.now += 0.004
    with lanes.admit(Priority.REALTIME):  # a batch call starts and ends inside it
        with lanes.admit(Priority.BATCH, shed=False):
            clock.now += 0.002
        clock.now += 0.001
    with lanes.admit(Priority.ASYNC, shed=False):
        with lanes.admit(Priority.REALTIME):  # admitted while async work is in flight
            clock.now += 0.005
    with lanes.admit(Priority.REALTIME):
        clock.now += 0.001
    assert seen == [(0.004, False), (0.003, True), (0.005, True), (0.001, False)]
    assert (lanes.inflight, lanes.realtime_inflight, lanes.background_inflight) == (0, 0, 0)
    assert failures == [False] * 4
    with lanes.admit(Priority.REALTIME) as slot:
        slot.fell_back(False)
        slot.fell_back()  # served by the fallback chain
    for error, load in ((DeadlineExceeded("late"), True), (InvalidArgument("bad"), False)):
        with pytest.raises(type(error)), lanes.admit(Priority.REALTIME):
            raise error
        assert failures[-1] is load
    assert failures[4] is True and len(failures) == 7


def test_a_fallback_answer_is_a_miss_however_fast() -> None:
    pace = warmed()
    allowed = LIMITS.window - 9  # 9 of 10 at or below the threshold
    for _ in range(allowed + 1):
        pace.observe_realtime(0.001, contended=False, now_s=0.0, failed=True)
    assert pace.decisions["bad"] == 1 and pace.items == 16  # 4x the threshold: rows / 4
    assert pace.baseline_s() == pytest.approx(0.010)  # never part of the baseline


async def test_an_overloaded_pace_refuses_client_background_work_never_realtime() -> None:
    refused: list[str] = []
    pace = warmed()
    lanes = LaneAdmission(0, retry_after_ms=300, on_refused=refused.append, pace=pace)
    pace.items, pace.pause_s = LIMITS.min_items, LIMITS.max_pause_s
    window(pace, 0.100)
    assert pace.overloaded
    for lane in (Priority.BATCH, Priority.ASYNC):
        with pytest.raises(ResourceExhausted, match="retry after 300 ms"):
            lanes.admit(lane)
    with lanes.admit(Priority.REALTIME), lanes.admit(Priority.BATCH, shed=False):  # own accepted work: deferred
        pass
    assert refused == ["batch", "async"]
    window(pace, 0.010)  # real-time recovered
    with lanes.admit(Priority.BATCH):
        pass
    assert not LaneAdmission(0).pace and await LaneAdmission(0).background_turn() == 0


class RecordingPredictor:
    def __init__(self) -> None:
        self.calls: list[int] = []

    async def predict_batch(
        self, request_id: str, model: str, version: str, items: Sequence[PredictInput], deadline: Deadline
    ) -> list[PredictOutput]:
        self.calls.append(len(items))
        return [
            PredictOutput(request_id, model, "1", i.entity_id, Score(score=0.5, label="ok"), Arm.STABLE, Timings())
            for i in items
        ]


async def test_the_chunk_scorer_sends_calls_of_the_paces_size() -> None:
    pace = warmed()
    pace.items = 16
    predictor = RecordingPredictor()
    lanes = LaneAdmission(0, pace=pace, clock=lambda: 0.0)  # real-time seen at 0: not idle
    pace.observe_realtime(0.010, contended=False, now_s=0.0)
    scorer = ChunkScorer(predictor, lanes, ScoringLimits(items_per_call=40, yield_max_s=0))  # type: ignore[arg-type]
    spec = JobSpec("j", "o", "fraud", "", "in.parquet", "out.parquet", 100, "entity_id", 100, 1, 0)

    async def keep_going() -> bool:
        if len(predictor.calls) == 2:
            pace.items = 64  # the pace sped up mid-chunk: capped at items_per_call
        return True

    rows: list[dict[str, Any]] = [{"entity_id": f"u{i}", "amount": 1.0} for i in range(100)]
    results = await scorer.score(spec, 0, rows, keep_going)
    assert predictor.calls == [16, 16, 40, 28]
    assert len(results) == 100 and all(r["score"] == 0.5 for r in results)


def test_calls_are_capped_to_last_about_max_call_s() -> None:
    pace = Pace(LIMITS)  # max_call_s 50 ms, max 256 rows
    assert pace.call_cap() == 256  # nothing measured yet
    pace.call_done(100, 0.100)  # 1 ms per row: 50 rows fit in 50 ms (200 with no real-time traffic)
    assert (pace.call_cap(), pace.call_cap(idle=True)) == (50, 200)
    assert pace.next_call(0.0)[0] == 128  # idle doubling, capped at 200
    assert pace.next_call(0.1)[0] == 200
    pace.observe_realtime(0.010, contended=True, now_s=0.2)  # real-time traffic: 50 again
    assert pace.next_call(0.3)[0] == 50
    pace.call_done(100, 0.010)  # faster now: 0.7 x 1 ms + 0.3 x 0.1 ms per row
    assert pace.call_cap() == int(0.05 / 0.00073)
    pace.call_done(10, 10.0)  # a stalled call: never below min_items
    assert pace.call_cap() == LIMITS.min_items
    pace.call_done(0, 1.0)  # nothing to learn from
    assert pace.call_cap() == LIMITS.min_items
