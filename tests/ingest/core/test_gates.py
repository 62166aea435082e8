"""Quality gates: every rejection reason, the distribution warnings, and the stored text form."""

from __future__ import annotations

import pytest

from predmesh.featurestore.spec import Scalar
from services.ingest.core.gates import REASONS, Accepted, IncomingEvent, QualityGates, Rejected
from tests.ingest.support import registry

NOW_S = 1_800_000_000.0
NOW_MS = int(NOW_S * 1000)


def gates() -> QualityGates:
    return QualityGates(registry(), max_entity_id_length=8, max_future_s=60, wall_clock=lambda: NOW_S)


def event(values: dict[str, Scalar | None], **kw: object) -> IncomingEvent:
    base: dict[str, object] = {"entity_type": "user", "entity_id": "u1", "event_time_ms": NOW_MS - 1000}
    base.update(kw)
    return IncomingEvent(values=values, **base)  # type: ignore[arg-type]


def test_a_valid_event_is_encoded_as_stored_text() -> None:
    out = gates().check(event({"spend": 12, "country": "US", "txn_count": 3.0}))
    assert out == Accepted("user", "u1", NOW_MS - 1000, {"spend": "12.0", "country": "US", "txn_count": "3"}, ())


@pytest.mark.parametrize(
    ("ev", "reason", "detail"),
    [
        (event({"spend": 1.0}, entity_type="shop"), "unknown_entity_type", "'shop' is not registered"),
        (event({"spend": 1.0}, entity_id=""), "bad_entity_id", "empty or longer than 8"),
        (event({"spend": 1.0}, entity_id="x" * 9), "bad_entity_id", "empty or longer than 8"),
        (event({"spend": 1.0}, event_time_ms=None), "missing_event_time", "not set"),
        (event({"spend": 1.0}, event_time_ms=NOW_MS + 61_000), "future_event_time", "60s ahead"),
        (event({}), "no_values", "no values"),
        (event({"spnd": 1.0}), "unknown_feature", "'spnd' is not a feature of 'user'"),
        (event({"amount": 1.0}), "not_a_store_feature", "'amount' is request-sourced"),
        (event({"spend": -1.0}), "invalid_value", "spend: -1.0 is outside [0.0, 1000000.0]"),
        (event({"spend": "lots"}), "invalid_value", "spend: expected float"),
        (event({"spend": float("nan")}), "invalid_value", "not a finite number"),
        (event({"country": "DE"}), "invalid_value", "'DE' is not one of"),
        (event({"txn_count": 1.5}), "invalid_value", "expected an integral int"),
        (event({"spend": None}), "invalid_value", "no value set"),
        # one bad value rejects the whole event (nothing of it is written)
        (event({"spend": 1.0, "country": "DE"}), "invalid_value", "country"),
    ],
)
def test_rejections_name_their_reason(ev: IncomingEvent, reason: str, detail: str) -> None:
    out = gates().check(ev)
    assert isinstance(out, Rejected)
    assert out.reason == reason and reason in REASONS
    assert detail in out.detail


def test_distribution_checks_warn_but_accept() -> None:
    out = gates().check(event({"spend": 950.0, "country": "other", "txn_count": 1}))
    assert isinstance(out, Accepted)
    assert set(out.warnings) == {("spend", "above_p95"), ("country", "uncommon_category")}
    low = gates().check(event({"spend": 0.5}))
    assert isinstance(low, Accepted) and low.warnings == (("spend", "below_p5"),)
