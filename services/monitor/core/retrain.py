"""When to call the retraining webhook, what to send, and how long to wait between attempts. Pure.

`DriftTrigger.fire(stats, psi_alert, now_s)` returns one `DriftEvent` per drifted model version
(score PSI or any feature PSI above `psi_alert`, the rule of the `predmesh_monitor_drift` gauge),
at most one per version per `cooldown_s`: a version that stays drifted is reported again once the
cooldown has passed. Called from the evaluation task only (not thread-safe).

`WebhookOutcome`: how one call ended (status, attempts, last HTTP status and error).

`backoff_delays(initial_s, max_s, horizon_s, rng)` yields the waits between attempts: exponential
(initial_s * 2^n, capped at max_s) with full jitter (uniform in [0, cap]), until the sum of the
waits would pass `horizon_s`; the delivery gives up then.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.monitor.core.windows import WindowStats


@dataclass(frozen=True, slots=True)
class DriftEvent:
    model: str
    version: str
    detected_s: float
    psi_alert: float
    score_psi: float | None
    feature_psi: Mapping[str, float] = field(default_factory=dict)
    delivery_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def drifted(self) -> list[str]:
        """What crossed the threshold: "score" and/or feature names."""
        out = ["score"] if self.score_psi is not None and self.score_psi > self.psi_alert else []
        return out + sorted(n for n, v in self.feature_psi.items() if v > self.psi_alert)

    def payload(self) -> dict[str, Any]:
        """The JSON body POSTed to the webhook."""
        return {
            "event": "predmesh.drift",
            "delivery_id": self.delivery_id,
            "model": self.model,
            "version": self.version,
            "detected_at_s": self.detected_s,
            "psi_alert": self.psi_alert,
            "score_psi": self.score_psi,
            "feature_psi": dict(sorted(self.feature_psi.items())),
            "drifted": self.drifted,
        }


@dataclass(frozen=True, slots=True)
class WebhookOutcome:
    """How one webhook call ended (recorded in the analytics store's `retrain_webhooks`)."""

    status: str  # delivered | failed | refused
    attempts: int  # HTTP attempts made (0: refused before any)
    http_status: int  # of the last attempt (0: none or a connection error)
    error: str  # the last error ("" when delivered)
    finished_s: float  # unix time the last attempt ended

    @property
    def delivered(self) -> bool:
        return self.status == "delivered"


def is_drifted(stats: WindowStats, psi_alert: float) -> bool:
    """The same rule as the `predmesh_monitor_drift` gauge."""
    if stats.score_psi is not None and stats.score_psi > psi_alert:
        return True
    return any(v > psi_alert for v in stats.feature_psi.values())


class DriftTrigger:
    def __init__(self, cooldown_s: float) -> None:
        self._cooldown_s = cooldown_s
        self._last_s: dict[tuple[str, str], float] = {}

    def fire(self, stats: Sequence[WindowStats], psi_alert: float, now_s: float) -> list[DriftEvent]:
        events = []
        for st in stats:
            key = (st.model, st.version)
            last = self._last_s.get(key)
            if not is_drifted(st, psi_alert) or (last is not None and now_s - last < self._cooldown_s):
                continue
            self._last_s[key] = now_s
            events.append(DriftEvent(st.model, st.version, now_s, psi_alert, st.score_psi, dict(st.feature_psi)))
        return events


def backoff_delays(initial_s: float, max_s: float, horizon_s: float, rng: random.Random) -> Iterator[float]:
    spent = 0.0
    attempt = 0
    while True:
        delay = rng.uniform(0.0, min(max_s, initial_s * 2**attempt))
        if spent + delay > horizon_s:
            return
        spent += delay
        attempt += 1
        yield delay
