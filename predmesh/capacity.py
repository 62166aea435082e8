"""Capacity model: pods, Redis shards, Kafka partitions and brokers for a prediction rate.

Pure arithmetic on measured costs (docs/BENCHMARKS.md; the derivation is docs/CAPACITY.md);
`plan(Inputs(rps=100_000, features=50))` returns a `Plan` whose `steps` show every
multiplication, so a reader can check each number. No I/O; `predmesh capacity` prints it.

Model, per prediction:
- each Python service process uses at most one core (one event loop); a pod runs one
  process with 1 CPU; pods = ceil(rps x CPU-seconds per prediction / target utilisation);
- the features service reads one entity: a base cost plus a per-feature cost beyond the
  6 features it was measured with;
- Redis: one HGETALL per entity not served by the local cache; a shard is one master
  (one main thread) + `redis_replicas` replicas; shards = the larger of the CPU-bound and
  the network-bound count (reply bytes per entity grow with the features);
- Kafka: one event per prediction plus one per shadow-scored prediction; partitions by
  bytes per partition and by consumer throughput per partition; brokers by replicated
  write bandwidth, at least `replication_factor`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MEASURED_FEATURES = 6  # the demo registry's stored features, what the per-process costs were measured with


@dataclass(frozen=True)
class Profile:
    """CPU microseconds per prediction per process (features: per entity at MEASURED_FEATURES)."""

    name: str
    source: str
    edge_us: float
    gateway_us: float
    features_us: float
    orchestrator_us: float
    logger_us: float


# docs/BENCHMARKS.md, "Side by side", CPU table at 32 in flight: one call per prediction at every hop
# (gateway: the no-logging row, whose gateway did not score a shadow on every request).
UNARY = Profile(
    "unary",
    "BENCHMARKS.md side-by-side CPU table, 32 in flight, one call per hop (loaded 2-core box: upper bound)",
    edge_us=1136,
    gateway_us=3505,
    features_us=1494,
    orchestrator_us=2591,
    logger_us=1743,
)
# Batched hops (DESIGN.md cost model; BENCHMARKS.md "Cheaper hops" and "PredictBatch size"):
# features 199 us/entity at 32 entities per call, Infer ~65 us/row at 32, PredictBatch(32) ~400 us
# per item over all processes -> ~136 us of gateway work per item, plus one unary server hop
# (~290 us) for the caller's own Predict; Envoy ~450 us per request. The logger was not measured
# batched: its unary cost is kept (an upper bound).
COALESCED = Profile(
    "coalesced",
    "DESIGN.md cost model + BENCHMARKS.md batched costs (32 per call); logger: unary (upper bound)",
    edge_us=450,
    gateway_us=290 + 136,
    features_us=199,
    orchestrator_us=65,
    logger_us=1743,
)
PROFILES = {p.name: p for p in (UNARY, COALESCED)}


@dataclass(frozen=True)
class Inputs:
    """What is asked for, and the measured or assumed constants (each documented in CAPACITY.md)."""

    rps: float
    features: int = 50
    profile: Profile = COALESCED
    target_utilization: float = 0.5  # of each process's core (headroom for p99, a lost pod, a zone)
    cache_hit: float = 0.0  # share of entities served by the features service's local cache
    shadow_fraction: float = 0.1  # predictions also scored by a shadow version (demo routing: 10%)
    # features: measured 204 -> 415 us/entity from 6 -> 50 stored features (bench/features_width.py)
    feature_us: float = 4.8
    # Redis: CPU per HGETALL on the server, measured 8.5-23 us (6 and 50 fields, loaded box)
    redis_us_per_op: float = 23.0
    redis_replicas: int = 1
    # features service CPU per entity on a Redis Cluster (per-master pipelines, the default) vs a single
    # Redis: 225 vs 208 us at 32 entities per call (BENCHMARKS.md, "Scale-out"); applied when shards > 1
    cluster_features_factor: float = 1.08
    redis_nic_mb_s: float = 125.0  # 1 Gbit/s per Redis node
    redis_field_bytes: int = 40  # RESP bytes per field of a reply: name ~20 + value ~8 + framing
    # Kafka: PredictionEvent measured at ~230 B without features, +30 B per logged feature
    event_base_bytes: int = 230
    event_feature_bytes: int = 30
    log_features_sample: float = 0.0  # gateway setting: share of events carrying feature values
    record_overhead_bytes: int = 60  # Kafka record framing amortised in batches (no compression assumed)
    partition_mb_s: float = 5.0  # write MB/s one partition is given (conservative for ordered, keyed topics)
    consumer_events_s: float = 20_000.0  # events/s one consumer (monitor/sink process) handles: assumed
    replication_factor: int = 3
    broker_write_mb_s: float = 100.0  # replicated write MB/s a broker is given (disk + network, 50% of it)
    retention_h: float = 24.0


@dataclass
class Plan:
    inputs: Inputs
    pods: dict[str, int] = field(default_factory=dict)
    cores: float = 0.0
    redis_ops_s: float = 0.0
    redis_shards: int = 0
    redis_nodes: int = 0
    events_s: float = 0.0
    event_bytes: float = 0.0
    kafka_mb_s: float = 0.0
    kafka_partitions: int = 0
    kafka_brokers: int = 0
    kafka_disk_gb_per_broker: float = 0.0
    steps: list[str] = field(default_factory=list)


def pods_for(rps: float, cpu_us: float, utilization: float) -> int:
    """One-core pods to serve `rps` at `cpu_us` per request, each busy `utilization` of the time."""
    if rps <= 0:
        return 0
    return max(1, _ceil(rps * cpu_us / 1e6 / utilization))


def _ceil(x: float) -> int:
    """ceil() that ignores float noise (110,000 x 100 us / 0.5 is 22, not 22.000000000000004 -> 23)."""
    return math.ceil(round(x, 9))


def plan(inputs: Inputs) -> Plan:
    if inputs.rps <= 0 or inputs.features <= 0:
        raise ValueError("rps and features must be positive")
    if not 0 < inputs.target_utilization <= 1 or not 0 <= inputs.cache_hit < 1:
        raise ValueError("target_utilization must be in (0, 1] and cache_hit in [0, 1)")
    i, p, out = inputs, inputs.profile, Plan(inputs)
    util, steps = i.target_utilization, out.steps
    out.redis_ops_s = i.rps * (1 - i.cache_hit)
    cpu_shards = _ceil(out.redis_ops_s * i.redis_us_per_op / 1e6 / util)
    reply_bytes = i.features * i.redis_field_bytes
    net_shards = _ceil(out.redis_ops_s * reply_bytes / 1e6 / (i.redis_nic_mb_s * util))
    out.redis_shards = max(1, cpu_shards, net_shards)
    out.redis_nodes = out.redis_shards * (1 + i.redis_replicas)
    steps.append(f"redis ops = {i.rps:,.0f}/s x (1 - {i.cache_hit:g}) = {out.redis_ops_s:,.0f} HGETALL/s")
    steps.append(
        f"redis shards (CPU) = ceil({out.redis_ops_s:,.0f} x {i.redis_us_per_op:g} us / {util:g}) = {cpu_shards}"
    )
    steps.append(
        f"redis shards (network) = ceil({out.redis_ops_s:,.0f} x {reply_bytes} B"
        f" / ({i.redis_nic_mb_s:g} MB/s x {util:g}))"
        f" = {net_shards}; shards = {out.redis_shards}, nodes = {out.redis_shards} x (1 + {i.redis_replicas})"
        f" = {out.redis_nodes}"
    )

    features_us = p.features_us + i.feature_us * max(0, i.features - MEASURED_FEATURES)
    formula = f"{p.features_us:g} + {i.feature_us:g} x ({i.features} - {MEASURED_FEATURES})"
    if out.redis_shards > 1:
        features_us *= i.cluster_features_factor
        formula = f"({formula}) x {i.cluster_features_factor:g} (Redis Cluster client)"
    steps.append(f"features CPU/entity = {formula} = {features_us:,.0f} us")
    events_s = i.rps * (1 + i.shadow_fraction)
    per_service = {
        "edge (Envoy)": (i.rps, p.edge_us),
        "gateway": (i.rps, p.gateway_us),
        "features": (i.rps * (1 - i.cache_hit), features_us),
        "orchestrator": (i.rps * (1 + i.shadow_fraction), p.orchestrator_us),
        "logger": (events_s, p.logger_us),
    }
    for name, (rate, us) in per_service.items():
        n = pods_for(rate, us, util)
        out.pods[name] = n
        out.cores += n
        steps.append(f"{name}: ceil({rate:,.0f}/s x {us:,.0f} us / {util:g}) = {n} pods")

    out.events_s = events_s
    out.event_bytes = (
        i.event_base_bytes + i.log_features_sample * i.features * i.event_feature_bytes + i.record_overhead_bytes
    )
    out.kafka_mb_s = events_s * out.event_bytes / 1e6
    by_bytes = _ceil(out.kafka_mb_s / i.partition_mb_s)
    by_consumers = _ceil(events_s / i.consumer_events_s)
    brokers = max(i.replication_factor, _ceil(out.kafka_mb_s * i.replication_factor / i.broker_write_mb_s))
    partitions = max(by_bytes, by_consumers, brokers)
    out.kafka_partitions = math.ceil(partitions / brokers) * brokers  # an even spread over the brokers
    out.kafka_brokers = brokers
    out.kafka_disk_gb_per_broker = out.kafka_mb_s * i.replication_factor * 3600 * i.retention_h / 1e3 / brokers
    steps.append(
        f"events = {i.rps:,.0f}/s x (1 + {i.shadow_fraction:g} shadow) = {events_s:,.0f}/s of"
        f" {i.event_base_bytes} + {i.log_features_sample:g} x {i.features} x {i.event_feature_bytes}"
        f" + {i.record_overhead_bytes} = {out.event_bytes:,.0f} B -> {out.kafka_mb_s:,.1f} MB/s"
    )
    steps.append(
        f"partitions = max(bytes {by_bytes}, consumers {by_consumers}, brokers {brokers}),"
        f" rounded up to a multiple of {brokers} brokers = {out.kafka_partitions}"
    )
    steps.append(
        f"brokers = max(RF {i.replication_factor}, ceil({out.kafka_mb_s:,.1f} MB/s x {i.replication_factor}"
        f" / {i.broker_write_mb_s:g} MB/s)) = {brokers}; disk/broker for {i.retention_h:g} h ="
        f" {out.kafka_disk_gb_per_broker:,.0f} GB"
    )
    return out


def render(result: Plan) -> str:
    """The plan as markdown: the table, then the arithmetic."""
    i = result.inputs
    lines = [
        f"predictions/s: {i.rps:,.0f}, stored features per entity: {i.features}, profile: {i.profile.name}"
        f" ({i.profile.source}), target utilisation {i.target_utilization:g} per process",
        "",
        "| what | count |",
        "|---|---:|",
        *(f"| {name} pods (1 CPU each) | {n} |" for name, n in result.pods.items()),
        f"| Python/Envoy cores | {result.cores:,.0f} |",
        f"| Redis Cluster shards (masters) | {result.redis_shards} |",
        f"| Redis nodes (with replicas) | {result.redis_nodes} |",
        f"| Kafka partitions (predictions topic) | {result.kafka_partitions} |",
        f"| Kafka brokers | {result.kafka_brokers} |",
        f"| Kafka disk per broker ({i.retention_h:g} h retention) | {result.kafka_disk_gb_per_broker:,.0f} GB |",
        "",
        "arithmetic:",
        *(f"- {step}" for step in result.steps),
    ]
    return "\n".join(lines)
