"""Priority lanes: which class a request runs in, and admission that protects real-time traffic.

Classes, most urgent first: `realtime` < `async` < `batch`. An API key has a default class
(`priority` in the key table, default realtime); a request may ask for its key's class or a
less urgent one, never a more urgent one (PermissionDenied).

`LaneAdmission` counts the requests the gateway is working on. With `max_inflight` = L it
admits batch work while fewer than `batch_share * L` are in flight, async work below
`async_share * L` and real-time work below L: under overload batch is refused first, then
async, and real-time only when the gateway is full. A refusal is ResourceExhausted whose
message carries a retry hint ("retry after N ms"). `max_inflight` 0 = no admission limit.

With a `Pace` (core/pace.py) it also times every real-time request from admission to release,
marks it contended when background (async or batch lane) work was in flight at any moment of it,
and reports it to the pace; while the pace says `overloaded`, new background requests are refused
too (`admit(..., shed=True)`, what client calls use) while the gateway's own accepted background
work is deferred (`shed=False`, and `background_turn()` pauses it). One event loop; not thread-safe.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable, Iterable
from types import TracebackType

from predmesh.common.errors import ErrorCode
from services.gateway.core.pace import Pace
from services.gateway.errors import PermissionDenied, PredmeshError, ResourceExhausted


class Priority(enum.IntEnum):
    """Lower value = more urgent (same numbers as predmesh.v1.Priority)."""

    REALTIME = 1
    ASYNC = 2
    BATCH = 3

    @property
    def lane(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, name: str) -> Priority:
        try:
            return cls[name.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown priority {name!r} (realtime, async, batch)") from None


def most_urgent(priorities: Iterable[int]) -> Priority:
    """The class a batch of items is served in: its most urgent member's (an unset 0 is real-time)."""
    return Priority(min((p or Priority.REALTIME) for p in priorities))


def resolve(requested: int, key_default: Priority, floor: Priority = Priority.REALTIME) -> Priority:
    """The class a request runs in: `requested` (0 = key default), never more urgent than the key
    allows; `floor` is the least urgent class the method itself implies (PredictAsync: async)."""
    if requested == 0:
        chosen = key_default
    else:
        try:
            chosen = Priority(requested)
        except ValueError:
            raise PermissionDenied(f"unknown priority {requested}") from None
        if chosen < key_default:
            raise PermissionDenied(
                f"this API key may not ask for priority {chosen.lane} (its class: {key_default.lane})"
            )
    return max(chosen, floor)


class LaneAdmission:
    """In-flight counter with per-lane thresholds (see the module docstring)."""

    def __init__(
        self,
        max_inflight: int,
        async_share: float = 0.75,
        batch_share: float = 0.5,
        retry_after_ms: int = 200,
        on_refused: Callable[[str], None] = lambda lane: None,
        pace: Pace | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_inflight
        self._limits = {
            Priority.REALTIME: max_inflight,
            Priority.ASYNC: max(1, int(max_inflight * async_share)),
            Priority.BATCH: max(1, int(max_inflight * batch_share)),
        }
        self.retry_after_ms = retry_after_ms
        self.inflight = 0
        self.realtime_inflight = 0
        self._on_refused = on_refused
        self.pace = pace
        self._clock = clock
        self.background_inflight = 0
        self._background_starts = 0  # background calls admitted so far (a real-time request saw one start?)
        self._freed: asyncio.Event | None = None  # set (and replaced) whenever a slot is released
        self._quiet: asyncio.Event | None = None  # set (and replaced) when no real-time request is left

    def has_room(self, priority: Priority) -> bool:
        return self._max <= 0 or self.inflight < self._limits[priority]

    async def wait_for_room(self, priority: Priority) -> None:
        """Wait until `priority` would be admitted (deferred work: accepted already, never refused)."""
        while not self.has_room(priority):
            if self._freed is None:
                self._freed = asyncio.Event()
            await self._freed.wait()

    async def realtime_quiet(self, max_wait_s: float) -> None:
        """Wait until no real-time request is in flight, at most `max_wait_s` (then go on anyway)."""
        if self.realtime_inflight <= 0 or max_wait_s <= 0:
            return
        if self._quiet is None:
            self._quiet = asyncio.Event()
        try:
            await asyncio.wait_for(self._quiet.wait(), max_wait_s)
        except TimeoutError:
            pass

    async def background_turn(self) -> int:
        """Before a background call: pause as the pace says; the rows the call may carry (0 = no pace)."""
        if self.pace is None:
            return 0
        items, pause_s = self.pace.next_call(self._clock())
        if pause_s > 0:
            await asyncio.sleep(pause_s)
        return items

    def background_done(self, rows: int, seconds: float) -> None:
        """After a background call: its size and duration (the pace caps how long calls last)."""
        if self.pace is not None:
            self.pace.call_done(rows, seconds)

    def release(
        self, priority: Priority | None = None, started: tuple[float, int, bool] | None = None, failed: bool = False
    ) -> None:
        """Free one slot; `started` = (admission time, background starts then, background busy then)
        of a real-time request, reported to the pace with `failed` (fallback answer or load error)."""
        self.inflight -= 1
        freed, self._freed = self._freed, None
        if freed is not None:
            freed.set()
        if priority == Priority.REALTIME:
            self.realtime_inflight -= 1
            if self.realtime_inflight <= 0 and self._quiet is not None:
                quiet, self._quiet = self._quiet, None
                quiet.set()
            if self.pace is not None and started is not None:
                now = self._clock()
                at, starts, busy = started
                self.pace.observe_realtime(now - at, busy or starts != self._background_starts, now, failed)
        elif priority is not None:
            self.background_inflight -= 1

    def admit(self, priority: Priority, shed: bool = True) -> _Admitted:
        """A context manager holding one in-flight slot; ResourceExhausted when the lane is full, or for
        background work with `shed` while the pace is overloaded."""
        overloaded = shed and priority != Priority.REALTIME and self.pace is not None and self.pace.overloaded
        if overloaded or not self.has_room(priority):
            self._on_refused(priority.lane)
            raise ResourceExhausted(
                f"gateway overloaded: {priority.lane} requests refused, retry after {self.retry_after_ms} ms"
            )
        self.inflight += 1
        if priority == Priority.REALTIME:
            self.realtime_inflight += 1
            started = (self._clock(), self._background_starts, self.background_inflight > 0)
            if self.pace is not None:
                self.pace.realtime_arrived(started[0])
            return _Admitted(self, priority, started)
        self.background_inflight += 1
        self._background_starts += 1
        return _Admitted(self, priority)


_LOAD_ERRORS = (ErrorCode.DEADLINE_EXCEEDED, ErrorCode.UNAVAILABLE, ErrorCode.RESOURCE_EXHAUSTED)


class _Admitted:
    """One admitted request's slot (`with admission.admit(p) as slot:`); `slot.fell_back()` marks an
    answer served by the fallback chain (a miss for the pace, however fast)."""

    def __init__(
        self, admission: LaneAdmission, priority: Priority, started: tuple[float, int, bool] | None = None
    ) -> None:
        self._admission = admission
        self._priority = priority
        self._started = started
        self._failed = False

    def fell_back(self, yes: bool = True) -> None:
        self._failed = self._failed or yes

    def __enter__(self) -> _Admitted:
        return self

    def __exit__(self, _type: type[BaseException] | None, err: BaseException | None, _tb: TracebackType | None) -> None:
        if isinstance(err, asyncio.CancelledError) or (isinstance(err, PredmeshError) and err.code in _LOAD_ERRORS):
            self._failed = True
        self._admission.release(self._priority, self._started, self._failed)
