"""Provisioning Kafka topics from a declared spec: partitions, replication factor, topic configs.

The Helm chart's topic-provisioning hook Job (`kafka.provisioning`) and `predmesh topics ensure`
run `ensure_topics`: per declared topic,

- missing: created with its partitions, replication factor and configs (retention.ms, ...);
- existing with fewer partitions: partitions added up to the declared count (Kafka never
  removes partitions; consumers of one group then spread over more of them; records already
  written keep their partition, so one key's order holds only for records written after);
- existing with more partitions: kept (reported);
- existing with another replication factor: reported, not changed (that needs a partition
  reassignment on the brokers);
- declared configs that differ from the topic's: set (incremental alter, only those keys).

`plan(existing, specs)` is the pure decision (unit-tested); `ensure_topics` reads the cluster's
metadata and applies the plan through one confluent-kafka `AdminClient` it creates and drops.
Blocking: call from a thread or the command line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One declared topic."""

    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TopicState:
    """What the cluster holds for one topic: partition count, replication factor, configs."""

    partitions: int
    replication_factor: int
    config: Mapping[str, str] = field(default_factory=dict)


class Kind(Enum):
    CREATE = "create"
    ADD_PARTITIONS = "add-partitions"
    SET_CONFIG = "set-config"
    OK = "ok"
    KEEP_MORE_PARTITIONS = "keep-more-partitions"
    REPLICATION_DIFFERS = "replication-differs"


@dataclass(frozen=True, slots=True)
class Action:
    kind: Kind
    spec: TopicSpec
    detail: str = ""
    config: Mapping[str, str] = field(default_factory=dict)  # SET_CONFIG: the keys to set


def parse_specs(raw: str | Sequence[Mapping[str, Any]]) -> list[TopicSpec]:
    """`[{"name": ..., "partitions": N, "replicationFactor": R, "config": {...}}, ...]` (JSON text or parsed).

    Raises ValueError naming the first bad entry (missing name, counts < 1, duplicate names)."""
    doc = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(doc, list):
        raise ValueError("topic spec: expected a JSON list of topics")
    specs: list[TopicSpec] = []
    seen: set[str] = set()
    for index, item in enumerate(doc):
        if not isinstance(item, Mapping):
            raise ValueError(f"topic spec [{index}]: expected an object")
        name = str(item.get("name") or "")
        try:
            partitions = int(item.get("partitions", 0))
            replication = int(item.get("replicationFactor", 0))
        except (TypeError, ValueError):
            raise ValueError(
                f"topic spec [{index}] {name!r}: partitions and replicationFactor must be integers"
            ) from None
        if not name or partitions < 1 or replication < 1:
            raise ValueError(f"topic spec [{index}] {name!r}: needs a name, partitions >= 1, replicationFactor >= 1")
        if name in seen:
            raise ValueError(f"topic spec: {name!r} is declared twice")
        seen.add(name)
        config = {str(k): str(v) for k, v in (item.get("config") or {}).items()}
        specs.append(TopicSpec(name, partitions, replication, config))
    return specs


def plan(existing: Mapping[str, TopicState], specs: Iterable[TopicSpec]) -> list[Action]:
    """What `ensure_topics` does for each spec, given the cluster's topics (module docstring)."""
    actions: list[Action] = []
    for spec in specs:
        state = existing.get(spec.name)
        if state is None:
            actions.append(Action(Kind.CREATE, spec, f"{spec.partitions} partitions, RF {spec.replication_factor}"))
            continue
        if state.partitions < spec.partitions:
            actions.append(Action(Kind.ADD_PARTITIONS, spec, f"{state.partitions} -> {spec.partitions} partitions"))
        elif state.partitions > spec.partitions:
            detail = f"has {state.partitions} partitions, {spec.partitions} declared (Kafka cannot remove partitions)"
            actions.append(Action(Kind.KEEP_MORE_PARTITIONS, spec, detail))
        if state.replication_factor != spec.replication_factor:
            detail = f"RF {state.replication_factor}, {spec.replication_factor} declared (needs a reassignment)"
            actions.append(Action(Kind.REPLICATION_DIFFERS, spec, detail))
        changed = {k: v for k, v in spec.config.items() if state.config.get(k) != v}
        if changed:
            actions.append(Action(Kind.SET_CONFIG, spec, ", ".join(f"{k}={v}" for k, v in changed.items()), changed))
        if not any(a.spec is spec for a in actions):
            actions.append(Action(Kind.OK, spec, f"{state.partitions} partitions, RF {state.replication_factor}"))
    return actions


def ensure_topics(
    admin_config: Mapping[str, Any], specs: Sequence[TopicSpec], timeout_s: float = 30.0
) -> list[tuple[Action, str | None]]:
    """Apply `plan` on the cluster; per action, None when it succeeded (or needed nothing), else the error."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        NewPartitions,
        NewTopic,
    )

    admin = AdminClient(dict(admin_config))
    existing = _existing(admin, [s.name for s in specs], timeout_s)
    actions = plan(existing, specs)
    futures: list[tuple[Action, Any]] = []
    for action in actions:
        spec = action.spec
        if action.kind is Kind.CREATE:
            new = NewTopic(spec.name, spec.partitions, spec.replication_factor, config=dict(spec.config))
            (future,) = admin.create_topics([new], request_timeout=timeout_s).values()
        elif action.kind is Kind.ADD_PARTITIONS:
            (future,) = admin.create_partitions([NewPartitions(spec.name, spec.partitions)]).values()
        elif action.kind is Kind.SET_CONFIG:
            entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in action.config.items()]
            resource = ConfigResource("topic", spec.name, incremental_configs=entries)
            (future,) = admin.incremental_alter_configs([resource], request_timeout=timeout_s).values()
        else:
            future = None
        futures.append((action, future))
    results: list[tuple[Action, str | None]] = []
    for action, future in futures:
        error = None
        if future is not None:
            try:
                future.result(timeout=timeout_s)
            except KafkaException as err:
                error = str(err.args[0].str() if err.args else err)
            except TimeoutError:
                error = f"no answer within {timeout_s} s"
        results.append((action, error))
    return results


def _existing(admin: Any, names: Sequence[str], timeout_s: float) -> dict[str, TopicState]:
    """Partition count, replication factor and (described) configs of the declared topics that exist."""
    from confluent_kafka.admin import ConfigResource

    metadata = admin.list_topics(timeout=timeout_s)
    found: dict[str, TopicState] = {}
    present = [n for n in names if n in metadata.topics and metadata.topics[n].error is None]
    configs: dict[str, dict[str, str]] = {}
    if present:
        described = admin.describe_configs([ConfigResource("topic", n) for n in present], request_timeout=timeout_s)
        for resource, future in described.items():
            entries = future.result(timeout=timeout_s)
            configs[resource.name] = {k: str(e.value) for k, e in entries.items() if e.value is not None}
    for name in present:
        partitions = metadata.topics[name].partitions
        replication = max((len(p.replicas) for p in partitions.values()), default=0)
        found[name] = TopicState(len(partitions), replication, configs.get(name, {}))
    return found


def report(results: Iterable[tuple[Action, str | None]]) -> tuple[list[str], bool]:
    """Lines for a log or terminal, and whether every action succeeded."""
    lines: list[str] = []
    ok = True
    for action, error in results:
        status = "ok" if error is None else f"FAILED: {error}"
        ok = ok and error is None
        lines.append(f"{action.spec.name}: {action.kind.value} ({action.detail}) {status}")
    return lines, ok
