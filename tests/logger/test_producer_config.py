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
