"""The gateway's per-row wire builders give exactly the messages of the plain constructions they replace:
Values written in place, rows read back, log events with only their present fields set, and the
features hash of the prediction log computed in one call."""

from __future__ import annotations

import hashlib
import itertools
import struct
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from predmesh.common.values import scalar_to_value
from predmesh.v1 import common_pb2, events_pb2, features_pb2, inference_pb2
from services.gateway.core.hashing import features_hash
from services.gateway.core.types import Arm, PredictionRecord, Scalar, Score
from services.gateway.errors import InvalidArgument
from services.gateway.transport.converters import add_values, row_scalars, set_value
from services.gateway.transport.logsink import record_to_event

ROW: list[Scalar] = [0.0, "", False, 0, 3, True, "x", 1.5, -2.25]


def test_values_written_in_place_equal_scalar_to_value() -> None:
    row = inference_pb2.Row()
    add_values(row.values, ROW)
    assert row == inference_pb2.Row(values=[scalar_to_value(v) for v in ROW])
    key = features_pb2.EntityKey(entity_id="u1")
    for i, value in enumerate(ROW):
        set_value(key.context[f"c{i}"], value)
    assert key == features_pb2.EntityKey(
        entity_id="u1", context={f"c{i}": scalar_to_value(v) for i, v in enumerate(ROW)}
    )
    with pytest.raises((TypeError, ValueError)):
        add_values(inference_pb2.Row().values, [object()])  # type: ignore[list-item]


def test_row_scalars_reads_every_kind_and_names_an_unset_value() -> None:
    values = [scalar_to_value(v) for v in ROW]
    names = [f"f{i}" for i in range(len(ROW))]
    assert row_scalars(values, names) == tuple(float(v) if type(v) is int else v for v in ROW)
    with pytest.raises(InvalidArgument, match="'f1' has no value set"):
        row_scalars([values[0], common_pb2.Value()], names[:2])
    with pytest.raises(ValueError):
        row_scalars(values, names[:-1])


def _reference_event(record: PredictionRecord) -> events_pb2.PredictionEvent:
    """Every field passed to the constructor (how the event was built before)."""
    ts = Timestamp()
    ts.FromNanoseconds(int(record.timestamp_s * 1e9))
    return events_pb2.PredictionEvent(
        request_id=record.request_id,
        model=record.model,
        model_version=record.model_version,
        arm=record.arm,
        entity_id=record.entity_id,
        features_hash=record.features_hash,
        prediction=common_pb2.Prediction(
            score=record.score.score, scores=list(record.score.scores), label=record.score.label
        ),
        latency_ms=record.latency_ms,
        degraded=record.degraded,
        degraded_reason=record.degraded_reason,
        trace_id=record.trace_id,
        timestamp=ts,
        defaulted_features=list(record.defaulted_features),
        traceparent=record.traceparent,
        features={name: scalar_to_value(value) for name, value in record.features},
        stale_features=list(record.stale_features),
        entities=dict(record.entities),
        priority=record.priority,  # type: ignore[arg-type]
        cached=record.cached,
    )


OPTIONAL: dict[str, tuple[Any, Any]] = {
    "degraded": (False, True),
    "degraded_reason": ("", "features_missing"),
    "trace_id": ("", "0af7651916cd43dd8448eb211c80319c"),
    "traceparent": ("", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    "defaulted_features": ((), ("amount", "hour")),
    "features": ((), (("amount", 12.5), ("country", "US"), ("night", True), ("amount", 3))),
    "stale_features": ((), ("txn_count_7d",)),
    "entities": ({}, {"merchant": "m-1"}),
    "cached": (False, True),
    "priority": (0, 2),
}


@pytest.mark.parametrize("present", list(itertools.product([0, 1], repeat=3)))
def test_log_event_equals_the_full_construction(present: tuple[int, int, int]) -> None:
    fields = list(OPTIONAL)
    for offset in range(0, len(fields), 3):  # every optional field absent and present, in groups of three
        chosen = {name: OPTIONAL[name][present[i]] for i, name in enumerate(fields[offset : offset + 3])}
        record = PredictionRecord(
            request_id="r-1",
            model="fraud",
            model_version="1",
            arm=Arm.CANARY,
            entity_id="u1",
            features_hash="ab" * 32,
            score=Score(0.25, (0.75, 0.25), "legit"),
            latency_ms=3.5,
            degraded=chosen.get("degraded", False),
            degraded_reason=chosen.get("degraded_reason", ""),
            timestamp_s=1_764_590_000.123456,
            defaulted_features=chosen.get("defaulted_features", ()),
            trace_id=chosen.get("trace_id", ""),
            traceparent=chosen.get("traceparent", ""),
            features=chosen.get("features", ()),
            stale_features=chosen.get("stale_features", ()),
            entities=chosen.get("entities", {}),
            priority=chosen.get("priority", 0),
            cached=chosen.get("cached", False),
        )
        event = record_to_event(record)
        assert event == _reference_event(record)
        assert event.SerializeToString(deterministic=True) == _reference_event(record).SerializeToString(
            deterministic=True
        )


def _incremental_hash(names: list[str], values: list[Any]) -> str:
    digest = hashlib.sha256()
    for name, value in zip(names, values, strict=True):
        digest.update(name.encode() + b"\x00")
        if isinstance(value, bool):
            digest.update(b"b" + (b"\x01" if value else b"\x00"))
        elif isinstance(value, str):
            digest.update(b"s" + struct.pack(">I", len(value.encode())) + value.encode())
        else:
            digest.update(b"f" + struct.pack(">d", float(value)))
    return digest.hexdigest()


def test_features_hash_is_the_digest_of_the_tagged_pairs() -> None:
    names = ["amount", "country", "night", "count", "note", "empty"]
    values: list[Any] = [12.5, "US", True, 3, "ünïcode", ""]
    assert features_hash(names, values) == _incremental_hash(names, values)
    assert features_hash([], []) == hashlib.sha256().hexdigest()
    with pytest.raises(ValueError):
        features_hash(names, values[:-1])
