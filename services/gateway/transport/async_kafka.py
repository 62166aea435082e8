"""Kafka side of the durable async path: the queue producer and the worker's consumer group.

`KafkaAsyncLog` (JobQueue + ResultLog) owns one idempotent acks=all confluent-kafka producer
and a daemon thread that serves its delivery reports; `enqueue`/`publish_*` await the report of
their own record (so PredictAsync is acknowledged only when its record is durable), without
blocking the event loop. `start()` / `stop(grace)` (flush) from the app.

`AsyncJobConsumer` is the async-worker: a consumer group over `async-requests` run by every
gateway replica. It takes up to `batch` records at a time (blocking calls in a thread), hands
the decoded jobs to `DurableAsync.process` and commits the batch's offsets only after every
job's result is stored; on a failure it seeks back and retries the batch after a pause.
Records that do not decode are logged and skipped (committed with the batch).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from predmesh.common.errors import InvalidArgument, ResourceExhausted, Unavailable
from predmesh.common.kafka import consumer_config, durable_producer_config
from services.gateway.core.async_ports import AsyncJob, AsyncResult, DueCallback
from services.gateway.transport.async_codec import Headers, decode_job, encode_job, encode_result, target_to_text

log = logging.getLogger(__name__)
_rdkafka_log = logging.getLogger("services.gateway.rdkafka")


_REBUILD_CODES = frozenset(
    {
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
        KafkaError.UNKNOWN_PRODUCER_ID,
        KafkaError.INVALID_PRODUCER_EPOCH,
    }
)


def _headers(message: Message) -> Headers:
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in pairs if v is not None]


class KafkaAsyncLog:
    def __init__(
        self,
        bootstrap_servers: str,
        requests_topic: str,
        results_topic: str,
        dead_letter_topic: str,
        timeout_s: float = 10.0,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self._config = durable_producer_config(
            bootstrap_servers,
            "predmesh-gateway-async",
            delivery_timeout_ms=int(timeout_s * 1000),
            overrides={"logger": _rdkafka_log, **(overrides or {})},
        )
        self._topics = (requests_topic, results_topic, dead_letter_topic)
        self._timeout_s = timeout_s
        self._producer: Producer | None = None
        self._suspect = False  # set by a delivery error that leaves the producer unusable
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    async def _rebuild(self) -> None:
        """A new producer after a fatal/timed-out delivery (tansu forgets producer ids on restart, so an
        idempotent producer never recovers by itself); the old one's records are purged (their callers
        got or get Unavailable and may retry: the request id keys make that safe)."""
        old, self._producer, self._suspect = self._producer, Producer(self._config), False
        log.warning("async queue producer rebuilt after a delivery failure")
        if old is not None:
            old.purge()
            await asyncio.to_thread(old.flush, 0)

    async def start(self) -> None:
        self._producer = Producer(self._config)
        self._thread = threading.Thread(target=self._serve_reports, name="async-producer", daemon=True)
        self._thread.start()

    def _serve_reports(self) -> None:
        while not self._stopping.is_set():
            producer = self._producer  # swapped by _rebuild
            if producer is None:
                return
            producer.poll(0.05)

    async def stop(self, grace_s: float) -> None:
        self._stopping.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        if self._producer is not None:
            await asyncio.to_thread(self._producer.flush, grace_s)
            self._producer = None

    async def _produce(self, topic: str, key: str, value: bytes, headers: Headers) -> None:
        if self._producer is None:
            raise Unavailable("async queue not started")
        if self._suspect:
            await self._rebuild()
        assert self._producer is not None
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def report(err: KafkaError | None, _msg: Message) -> None:  # on the report thread
            if err is not None and (err.fatal() or err.code() in _REBUILD_CODES):
                self._suspect = True

            def settle() -> None:
                if done.done():
                    return
                if err is None:
                    done.set_result(None)
                else:
                    done.set_exception(Unavailable(f"async queue write failed: {err.str()}"))

            loop.call_soon_threadsafe(settle)

        try:
            self._producer.produce(topic, value=value, key=key.encode(), headers=list(headers), on_delivery=report)
        except BufferError as err:
            raise ResourceExhausted("async queue is full, retry later") from err
        except KafkaException as err:
            raise Unavailable(f"async queue write failed: {err}") from err
        try:
            await asyncio.wait_for(done, self._timeout_s + 1.0)
        except TimeoutError as err:
            raise Unavailable("async queue write timed out") from err

    async def enqueue(self, job: AsyncJob) -> None:
        value, headers = encode_job(job)
        await self._produce(self._topics[0], job.item.request_id, value, headers)

    async def publish_result(self, result: AsyncResult) -> None:
        await self._produce(self._topics[1], result.request_id, encode_result(result), [])

    async def dead_letter(self, due: DueCallback, reason: str) -> None:
        headers: Headers = [
            ("pm-target", target_to_text(due.target).encode()),
            ("pm-attempts", str(due.attempts + 1).encode()),
            ("pm-reason", reason[:500].encode()),
        ]
        await self._produce(self._topics[2], due.result.request_id, encode_result(due.result), headers)


class AsyncJobConsumer:
    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        group_id: str,
        process: Callable[[Sequence[AsyncJob]], Awaitable[None]],
        batch: int = 64,
        poll_s: float = 0.2,
        retry_s: float = 1.0,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self._config = consumer_config(
            bootstrap_servers, group_id, from_beginning=True, overrides={"logger": _rdkafka_log, **(overrides or {})}
        )
        self._config["enable.auto.commit"] = False  # offsets are committed after results are stored
        self._topic = topic
        self._process = process
        self._batch = batch
        self._poll_s = poll_s
        self._retry_s = retry_s
        self._consumer: Consumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._lock = threading.Lock()

    def _locked(self, call: Callable[..., Any], *args: Any) -> Any:
        with self._lock:  # a consume left running by a cancelled task finishes before close
            return call(*args)

    async def start(self) -> None:
        self._consumer = Consumer(self._config)
        self._consumer.subscribe([self._topic])
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not self._stopping:
            messages = await asyncio.to_thread(self._locked, consumer.consume, self._batch, self._poll_s)
            records = [m for m in messages if m.error() is None]
            for m in messages:
                error = m.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    log.warning("async consumer: %s", error.str())
            if not records:
                continue
            jobs = []
            for m in records:
                try:
                    jobs.append(decode_job(m.value() or b"", _headers(m)))
                except InvalidArgument as err:
                    log.error("skipping async record at %s/%d@%d: %s", m.topic(), m.partition(), m.offset(), err)
            try:
                await self._process(jobs)
                await asyncio.to_thread(consumer.commit, asynchronous=False)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # store or broker trouble: the batch is not committed, do it again
                log.warning("async batch failed, retrying in %.1fs: %s", self._retry_s, err)
                firsts: dict[tuple[str, int], int] = {}
                for m in records:
                    key = (m.topic() or "", m.partition() or 0)
                    offset = m.offset() or 0
                    firsts[key] = min(firsts.get(key, offset), offset)
                for (topic, partition), offset in firsts.items():
                    await asyncio.to_thread(consumer.seek, TopicPartition(topic, partition, offset))
                await asyncio.sleep(self._retry_s)

    async def stop(self) -> None:
        """Stop after the batch in progress (a cancelled batch is simply not committed), leave the group."""
        self._stopping = True
        if self._task is not None:
            _, pending = await asyncio.wait({self._task}, timeout=self._poll_s + 5.0)
            if pending:  # a batch still in progress: cancelled, not committed (redelivered later)
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=5.0)
        if self._consumer is not None:
            await asyncio.to_thread(self._locked, self._consumer.close)  # never during a consume
            self._consumer = None
