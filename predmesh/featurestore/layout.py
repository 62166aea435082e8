"""How features are stored in Redis: one definition for every reader and writer.

One hash per entity, `features:{entity_type}:{entity_id}`, field = feature name, value =
text (`predmesh.featurestore.values`), plus the reserved field `@event_time_ms` (not a
valid feature name): the event time (Unix ms) of the newest write, set by the ingestion
service and the loader. Keeping it inside the entity's hash keeps one key per entity, so
the conditional write below is atomic on one Redis Cluster slot and a read needs no extra
command.

`WRITE_IF_NEWER_LUA` is the only way streaming writes reach a hash: it sets the values and
the event time only when the event is strictly newer than the stored event time (an
out-of-order or replayed event is ignored), in one atomic script call per entity, touching
only its one key (so valid on a Redis Cluster).
"""

from __future__ import annotations

from collections.abc import Mapping

EVENT_TIME_FIELD = "@event_time_ms"

# KEYS[1] = entity hash; ARGV[1] = event time (Unix ms, integer); ARGV[2..] = field, value, ...
# Returns 1 when written, 0 when the stored event time is newer or equal (nothing written).
WRITE_IF_NEWER_LUA = """
local stored = redis.call('HGET', KEYS[1], '@event_time_ms')
if stored and tonumber(stored) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], '@event_time_ms', ARGV[1], unpack(ARGV, 2))
return 1
"""


def entity_key(entity_type: str, entity_id: str) -> str:
    return f"features:{entity_type}:{entity_id}"


def write_args(event_time_ms: int, values: Mapping[str, str]) -> list[str]:
    """ARGV of `WRITE_IF_NEWER_LUA` for one entity: the event time, then field/value pairs."""
    args = [str(int(event_time_ms))]
    for name, text in values.items():
        args.extend((name, text))
    return args
