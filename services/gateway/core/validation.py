"""Checks of caller input before any work is done (INVALID_ARGUMENT naming the field)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from services.gateway.core.types import PredictInput
from services.gateway.errors import InvalidArgument

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_MAX_ID = 256
_MAX_CONTEXT = 256
_MAX_ENTITIES = 16  # other entity types per request


def check_name(kind: str, value: str, required: bool = True) -> None:
    if not value:
        if required:
            raise InvalidArgument(f"{kind} is required")
        return
    if not _NAME.fullmatch(value):
        raise InvalidArgument(f"{kind} {value[:64]!r} is not a valid name")


def check_input(item: PredictInput) -> None:
    check_name("model", item.model)
    check_name("version", item.version, required=False)
    if not item.entity_id:
        raise InvalidArgument("entity_id is required")
    if len(item.entity_id) > _MAX_ID:
        raise InvalidArgument(f"entity_id longer than {_MAX_ID} characters")
    if len(item.request_id) > _MAX_ID:
        raise InvalidArgument(f"request_id longer than {_MAX_ID} characters")
    if len(item.context) > _MAX_CONTEXT:
        raise InvalidArgument(f"more than {_MAX_CONTEXT} context features")
    if len(item.entities) > _MAX_ENTITIES:
        raise InvalidArgument(f"more than {_MAX_ENTITIES} entities")
    for entity_type, entity_id in item.entities.items():
        if not entity_type or not entity_id or len(entity_id) > _MAX_ID or len(entity_type) > _MAX_ID:
            raise InvalidArgument(f"entities[{entity_type[:64]!r}]: empty or longer than {_MAX_ID} characters")


def check_batch(items: Sequence[PredictInput], max_items: int) -> None:
    if not items:
        raise InvalidArgument("items must not be empty")
    if len(items) > max_items:
        raise InvalidArgument(f"at most {max_items} items per batch, got {len(items)}")
    for item in items:
        check_input(item)
