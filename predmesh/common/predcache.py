"""The prediction cache's invalidation contract, shared by the ingestion service (writer) and
the gateway (reader); see services/gateway/core/cache.py for the design.

When the ingestion service writes an entity it INCRs `generation_key(type, id)` and PUBLISHes
`invalidation_message(type, id)` on `INVALIDATE_CHANNEL`, in the same pipelined round trip as
(and after) the feature write.
"""

from __future__ import annotations

import json

INVALIDATE_CHANNEL = "predmesh:pcache:invalidate"


def generation_key(entity_type: str, entity_id: str) -> str:
    """The Redis counter bumped on every write of this entity (absent = generation 0)."""
    return f"predmesh:pcache:gen:{entity_type}:{entity_id}"


def invalidation_message(entity_type: str, entity_id: str) -> str:
    return json.dumps([entity_type, entity_id], separators=(",", ":"), ensure_ascii=False)


def parse_invalidation(raw: bytes | str) -> tuple[str, str] | None:
    """(type, id) of a published message; None when it is not one."""
    try:
        entity_type, entity_id = json.loads(raw)
    except (ValueError, TypeError):
        return None
    if not isinstance(entity_type, str) or not isinstance(entity_id, str):
        return None
    return entity_type, entity_id
