"""Fault-injection harness: steady load through the edge, a live tail of the prediction log, and
per-fault accounting (sent, OK, degraded, errors by code, recovery seconds, lost, duplicates).

- `edge_channel(mesh)`: the one place that knows how to connect to the mesh's edge (TLS with the
  mesh CA and the API key, whatever `LocalMesh.edge_channel` sets up).
- `Load`: an open-loop generator (`rate` requests/s, each with its own request id) on a thread
  with its own event loop; every outcome is recorded with its send time.
- `EventTail`: consumes the `predictions` topic from the beginning on a thread and counts
  request ids; `switch_broker()` re-reads a restarted (memory-storage) broker from offset 0.
- `PhaseReport`: the numbers of one fault, computed from the outcomes sent in its window.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc

from predmesh.local.mesh import LocalMesh
from predmesh.v1 import common_pb2, prediction_pb2, prediction_pb2_grpc

CONTEXT = {
    "amount": common_pb2.Value(number_value=42.0),
    "channel": common_pb2.Value(string_value="web"),
    "hour_of_day": common_pb2.Value(number_value=13),
}


def edge_channel(mesh: LocalMesh) -> grpc.aio.Channel:
    """An async channel to the mesh's edge (Envoy), as an external caller would open it."""
    channel: grpc.aio.Channel = mesh.edge_channel(aio=True)
    return channel


@dataclass
class Outcome:
    request_id: str
    model: str
    sent_at: float
    code: str = "PENDING"  # "OK" or a gRPC status code name
    degraded: bool = False
    reason: str = ""


class Load:
    """Steady Predict traffic through the edge; models alternate fraud, fraud, fraud_nn (Triton)."""

    def __init__(self, mesh: LocalMesh, rate: float = 60.0, timeout_s: float = 5.0, users: int = 200) -> None:
        self._mesh = mesh
        self.rate = rate
        self.timeout_s = timeout_s
        self.users = users
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tag = uuid.uuid4().hex[:6]

    def start(self) -> None:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="fault-load", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 5)

    def since(self, t: float) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.sent_at >= t]

    def window(self, start: float, end: float) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if start <= o.sent_at < end]

    async def _run(self) -> None:
        channel = edge_channel(self._mesh)
        stub = prediction_pb2_grpc.PredictionServiceStub(channel)
        tasks: set[asyncio.Task[None]] = set()
        interval = 1.0 / self.rate
        i = 0
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                model = "fraud_nn" if i % 3 == 2 else "fraud"
                out = Outcome(f"f-{self._tag}-{i}", model, time.time())
                with self._lock:
                    self.outcomes.append(out)
                task = asyncio.create_task(self._call(stub, out, f"u{i % self.users:05d}"))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if tasks:
                await asyncio.wait(tasks, timeout=self.timeout_s + 1)
        finally:
            await channel.close()

    async def _call(self, stub: prediction_pb2_grpc.PredictionServiceStub, out: Outcome, entity: str) -> None:
        request = prediction_pb2.PredictRequest(
            request_id=out.request_id, model=out.model, entity_id=entity, context=CONTEXT
        )
        try:
            resp = await stub.Predict(request, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as err:
            out.code = err.code().name
            out.reason = (err.details() or "")[:200]
            return
        out.degraded, out.reason, out.code = resp.degraded, resp.degraded_reason, "OK"


class EventTail:
    """Counts request ids in the `predictions` topic, across broker restarts."""

    def __init__(self, bootstrap: str, topic: str = "predictions") -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._generation = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fault-tail", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def switch_broker(self) -> None:
        """The broker was restarted with empty storage: read the new one from the beginning."""
        with self._lock:
            self._generation += 1

    def seen(self, request_id: str) -> int:
        with self._lock:
            return self.counts[request_id]

    def _consumer(self) -> Any:
        from confluent_kafka import Consumer, TopicPartition

        from predmesh.local.kafka import DEV_CONSUMER_CONFIG

        consumer = Consumer(
            {
                **DEV_CONSUMER_CONFIG,
                "bootstrap.servers": self.bootstrap,
                "group.id": f"fault-tail-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "logger": _QUIET,
            }
        )
        partitions: list[int] = []
        deadline = time.monotonic() + 30
        while not partitions and time.monotonic() < deadline and not self._stop.is_set():
            try:
                topic = consumer.list_topics(self.topic, timeout=2).topics.get(self.topic)
                partitions = sorted(topic.partitions) if topic is not None and topic.error is None else []
            except Exception:
                partitions = []
            if not partitions:
                time.sleep(0.2)
        # Every partition from offset 0 (a broker restarted empty may have auto-created the topic).
        consumer.assign([TopicPartition(self.topic, p, 0) for p in partitions or [0]])
        return consumer

    def _run(self) -> None:
        from predmesh.v1.events_pb2 import PredictionEvent

        generation = self._generation
        consumer = self._consumer()
        try:
            while not self._stop.is_set():
                if generation != self._generation:
                    consumer.close()
                    generation = self._generation
                    consumer = self._consumer()
                for msg in consumer.consume(500, timeout=0.1):
                    if msg.error() is not None:
                        continue
                    rid = PredictionEvent.FromString(msg.value()).request_id
                    with self._lock:
                        self.counts[rid] += 1
        finally:
            consumer.close()


class _Quiet:
    """A logger for librdkafka that drops its reconnect chatter (the broker is killed on purpose)."""

    def log(self, *args: object, **kwargs: object) -> None:
        return None


_QUIET = _Quiet()


@dataclass
class PhaseReport:
    fault: str
    sent: int
    ok: int
    degraded: int
    errors: dict[str, int] = field(default_factory=dict)
    restart_s: float = 0.0  # from the fault to the supervisor's restart being done
    recovery_s: float = 0.0  # from the restart to the start of the final all-good streak
    lost: int = 0
    duplicates: int = 0
    lost_ids: list[str] = field(default_factory=list)

    def row(self) -> str:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "0"
        return (
            f"| {self.fault} | {self.sent} | {self.ok} | {self.degraded} | {errors} | "
            f"{self.restart_s:.1f} | {self.recovery_s:.1f} | {self.lost} | {self.duplicates} |"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


TABLE_HEADER = (
    "| fault | requests sent | OK | of which degraded | errors by code | restart s | recovery s "
    "| events lost | duplicates |\n|---|---|---|---|---|---|---|---|---|"
)


def summarize(fault: str, outcomes: list[Outcome], restarted_at: float, fault_at: float) -> PhaseReport:
    """Counts of a fault window; recovery = from the restart to the first of the final good answers."""
    errors: collections.Counter[str] = collections.Counter(o.code for o in outcomes if o.code != "OK")
    ok = [o for o in outcomes if o.code == "OK"]
    last_bad = max((o.sent_at for o in outcomes if o.code != "OK" or o.degraded), default=None)
    recovery = 0.0
    if last_bad is not None:
        first_good_after = min((o.sent_at for o in outcomes if o.sent_at > last_bad), default=last_bad)
        recovery = max(0.0, first_good_after - restarted_at)
    return PhaseReport(
        fault=fault,
        sent=len(outcomes),
        ok=len(ok),
        degraded=sum(o.degraded for o in ok),
        errors=dict(errors),
        restart_s=max(0.0, restarted_at - fault_at),
        recovery_s=recovery,
    )
