"""Extra Kafka properties (SASL_SSL, TLS CA...) may not weaken the producer's delivery guarantees."""

from __future__ import annotations

import pytest

from services.logger.core.producer import producer_config

BASE = {"client_id": "c", "compression": "lz4", "linger_ms": 5, "delivery_timeout_ms": 30000, "max_in_flight": 100}


@pytest.mark.parametrize("key", ["acks", "enable.idempotence", "ACKS", "max.in.flight.requests.per.connection"])
def test_extra_cannot_override_durability(key: str) -> None:
    with pytest.raises(ValueError, match="delivery guarantees"):
        producer_config("b:9092", extra={key: "0"}, **BASE)  # type: ignore[arg-type]


def test_extra_adds_security_settings() -> None:
    extra = {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "ssl.ca.location": "/etc/ca.crt"}
    config = producer_config("b:9092", extra=extra, **BASE)  # type: ignore[arg-type]
    assert config["security.protocol"] == "SASL_SSL" and config["acks"] == "all" and config["enable.idempotence"]


def test_outcome_records_go_to_the_outcomes_topic_keyed_by_request_id() -> None:
    from predmesh.clients.events import InvalidEvent, validate_event
    from predmesh.v1 import events_pb2, outcomes_pb2
    from services.logger.core.events import route

    outcome = events_pb2.PredictionEvent(
        request_id="r9", model="fraud", arm="outcome", outcome=outcomes_pb2.Outcome(value=1.0)
    )
    validate_event(outcome)
    r = route(outcome.SerializeToString(), "predictions", "shadow-predictions", "outcomes")
    assert (r.topic, r.key) == ("outcomes", b"r9")
    prediction = events_pb2.PredictionEvent(request_id="r9", model="fraud", arm="stable", entity_id="u1")
    assert route(prediction.SerializeToString(), "predictions", "shadow-predictions", "outcomes").topic == "predictions"
    for bad in (
        events_pb2.PredictionEvent(request_id="r", model="m", arm="outcome"),  # no outcome
        events_pb2.PredictionEvent(request_id="r", model="m", arm="stable", outcome=outcomes_pb2.Outcome(value=1)),
    ):
        with pytest.raises(InvalidEvent):
            validate_event(bad)
