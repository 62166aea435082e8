"""One unit convention in every service's settings: a duration ends in `_s` or `_ms`, a size in
`_bytes`, and the description names the same unit (env var names follow: PREDMESH_<SVC>_<FIELD>)."""

from __future__ import annotations

import re

import pytest
from pydantic_settings import BaseSettings

from predmesh.common.settings import ServerSettings
from services.controlplane.settings import ControlPlaneSettings
from services.features.settings import FeaturesSettings
from services.gateway.settings import GatewaySettings
from services.inference.settings import InferenceSettings
from services.logger.settings import LoggerSettings
from services.monitor.settings import MonitorSettings
from services.ortworker.settings import OrtWorkerSettings

CLASSES: list[type[BaseSettings]] = [
    ServerSettings,
    GatewaySettings,
    FeaturesSettings,
    InferenceSettings,
    OrtWorkerSettings,
    LoggerSettings,
    ControlPlaneSettings,
    MonitorSettings,
]
DURATION = re.compile(r"timeout|interval|poll|ttl|wait|grace|delay|linger|backoff|drain|deadline|budget|window|reset")
SIZE = re.compile(r"bytes|size")
UNIT_WORDS = {"s": ("second", "(s)", " s)", "(s;"), "ms": ("millisecond", "(ms", " ms)", "ms;"), "bytes": ("byte",)}
FIELDS = [(cls, name) for cls in CLASSES for name in cls.model_fields]


@pytest.mark.parametrize(("cls", "name"), FIELDS, ids=[f"{c.__name__}.{n}" for c, n in FIELDS])
def test_quantities_carry_their_unit(cls: type[BaseSettings], name: str) -> None:
    description = (cls.model_fields[name].description or "").lower()
    suffix = re.search(r"_(s|ms|bytes)$", name)
    if DURATION.search(name):
        assert suffix and suffix.group(1) in ("s", "ms"), f"{name}: a duration ends in _s or _ms"
    if SIZE.search(name) and not name.endswith("_rows"):
        assert suffix and suffix.group(1) == "bytes", f"{name}: a size ends in _bytes"
    if suffix:
        words = UNIT_WORDS[suffix.group(1)]
        assert any(w in description for w in words), f"{name}: description should name the unit: {description!r}"
