"""Gateway composition root: builds clients, core and server; owns their lifecycle."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

from predmesh.clients.logger import LoggerClient
from predmesh.common import telemetry
from predmesh.common.app import ServiceApp, run_app
from predmesh.common.callback_policy import CallbackPolicy
from predmesh.common.filewatch import FileWatcher
from predmesh.common.grpcclient import RETRY_UNAVAILABLE_OPTIONS, channel, client_tls
from predmesh.common.grpcserver import GrpcServer
from predmesh.common.metrics import expose_count
from predmesh.v1 import batchjobs_pb2_grpc, outcomes_pb2_grpc, prediction_pb2_grpc
from services.gateway.core.async_jobs import AsyncDispatcher
from services.gateway.core.auth import ApiKeyAuthorizer, KeyTable, load_key_file, merge_tables, parse_key_table
from services.gateway.core.batch_jobs import BatchJobs, BatchLimits
from services.gateway.core.batch_paths import PathPolicy
from services.gateway.core.batch_runner import BatchRunner, RunnerLimits
from services.gateway.core.batch_scoring import ChunkScorer, ScoringLimits
from services.gateway.core.breaker import BreakerRegistry
from services.gateway.core.cache import PredictionCache
from services.gateway.core.callbacks import CallbackLimits, CallbackSender
from services.gateway.core.catalog import ModelCatalog
from services.gateway.core.durable_async import DurableAsync, DurableAsyncLimits
from services.gateway.core.limits import PredictorLimits
from services.gateway.core.model_health import ModelHealthReporter
from services.gateway.core.model_stats import ModelStats
from services.gateway.core.outcomes import OutcomeRecorder, OutcomeSink
from services.gateway.core.pace import Pace, PaceLimits
from services.gateway.core.ports import PredictionSink
from services.gateway.core.predictor import Predictor
from services.gateway.core.priority import LaneAdmission
from services.gateway.core.routing_source import RoutingFileWatcher
from services.gateway.metrics import GatewayMetrics
from services.gateway.settings import GatewaySettings
from services.gateway.transport.async_kafka import AsyncJobConsumer, KafkaAsyncLog
from services.gateway.transport.async_store import RedisResultStore
from services.gateway.transport.batch_files import ArrowJobFiles
from services.gateway.transport.batch_servicer import BatchJobServicer
from services.gateway.transport.batch_store import RedisJobStore
from services.gateway.transport.cache_store_cluster import ClusterSharedCache, open_shared_cache
from services.gateway.transport.health import OrchestratorInventory
from services.gateway.transport.logsink import LoggerSink
from services.gateway.transport.outcomes_servicer import OutcomeServicer
from services.gateway.transport.servicer import PredictionServicer
from services.gateway.transport.upstreams import CallbackClient, FeaturesClient, InferenceClient

log = logging.getLogger(__name__)


class GatewayApp(ServiceApp[GatewaySettings]):
    """Lifecycle (ServiceApp): `await start()` opens the logger client and the upstream channels,
    loads routing and serves; `await stop()` flips health, drains RPCs, async jobs and shadows,
    closes the channels and flushes the log. A failed start closes what it opened.

    `sink` replaces the logger client (tests); otherwise one is created when `logger_target` is set.
    """

    name = "gateway"

    def __init__(self, settings: GatewaySettings, sink: PredictionSink | None = None) -> None:
        super().__init__(settings)
        self._sink = sink
        self.metrics = GatewayMetrics()
        self.predictor: Predictor | None = None
        self.outcomes = OutcomeRecorder(None)
        self.authorizer = ApiKeyAuthorizer(allow_anonymous=settings.allow_anonymous)
        self._sender: CallbackSender | None = None  # durable async callback sender (when on)

    async def _open_auth(self, stack: AsyncExitStack) -> None:
        """Load the key table (settings + key file, watched); no keys and no allow_anonymous = refuse to start."""
        s = self.settings
        defaults = {"rate_per_s": s.key_rate_per_s, "burst": s.key_burst}
        static = parse_key_table(dict(s.api_keys), defaults)
        self.authorizer.set_table(static)
        if s.api_keys_path:
            watcher: FileWatcher[KeyTable] = FileWatcher(
                [Path(s.api_keys_path)],
                lambda contents: load_key_file(contents, defaults),
                lambda table: self.authorizer.set_table(merge_tables(static, table)),
                s.api_keys_poll_ms / 1e3,
                name=f"API key file {s.api_keys_path}",
            )
            stack.push_async_callback(watcher.stop)
            await watcher.start()
        if not len(self.authorizer.table) and not s.allow_anonymous:
            raise RuntimeError(
                "no API keys configured (PREDMESH_GATEWAY_API_KEYS / PREDMESH_GATEWAY_API_KEYS_PATH): refusing to "
                "serve unauthenticated traffic; set PREDMESH_GATEWAY_ALLOW_ANONYMOUS=true to allow it explicitly"
            )
        if not len(self.authorizer.table):
            log.warning("gateway serving WITHOUT authentication (allow_anonymous=true)")

    async def _open_durable_async(
        self, stack: AsyncExitStack, predictor: Predictor, callbacks: CallbackClient, admission: LaneAdmission
    ) -> DurableAsync | None:
        """The durable async path (Kafka queue + Redis results), its worker and callback sender;
        None when `async_kafka_bootstrap` is not set (PredictAsync then stays in memory)."""
        s = self.settings
        if not s.async_kafka_bootstrap:
            return None
        if not s.async_redis_url:
            raise RuntimeError("PREDMESH_GATEWAY_ASYNC_KAFKA_BOOTSTRAP needs PREDMESH_GATEWAY_ASYNC_REDIS_URL too")
        store = RedisResultStore(s.async_redis_url, tls=s.redis_tls)
        stack.push_async_callback(store.close)
        kafka = KafkaAsyncLog(
            s.async_kafka_bootstrap,
            s.async_requests_topic,
            s.async_results_topic,
            s.async_dead_letter_topic,
            timeout_s=s.async_enqueue_timeout_ms / 1e3,
        )
        stack.push_async_callback(kafka.stop, s.grace_s)
        await kafka.start()
        durable = DurableAsync(
            predictor,
            kafka,
            store,
            kafka,
            CallbackPolicy(s.callback_hosts, s.callback_ports, s.callback_blocked_networks),
            DurableAsyncLimits(
                result_ttl_s=s.async_result_ttl_s,
                deadline_s=s.default_deadline_ms / 1e3,
                claim_lease_s=s.async_claim_lease_ms / 1e3,
            ),
            self.metrics,
            admission,
        )
        if s.async_worker:
            consumer = AsyncJobConsumer(
                s.async_kafka_bootstrap,
                s.async_requests_topic,
                s.async_consumer_group,
                durable.process,
                batch=s.async_consume_batch,
                overrides=s.async_kafka_extra,
            )
            stack.push_async_callback(consumer.stop)  # before the producer and store close (LIFO)
            await consumer.start()
            sender = CallbackSender(
                store,
                kafka,
                callbacks,
                CallbackLimits(
                    backoff_base_s=s.callback_backoff_base_ms / 1e3,
                    backoff_max_s=s.callback_backoff_max_ms / 1e3,
                    horizon_s=s.callback_horizon_s,
                    attempt_timeout_s=s.callback_timeout_ms / 1e3,
                    lease_s=s.callback_lease_ms / 1e3,
                    poll_s=s.callback_poll_ms / 1e3,
                ),
                self.metrics,
            )
            stack.push_async_callback(sender.stop)
            sender.start()
            self._sender = sender
        return durable

    async def _open_batch_jobs(
        self, stack: AsyncExitStack, predictor: Predictor, admission: LaneAdmission
    ) -> BatchJobs | None:
        """Server-side batch jobs (state in `batch_redis_url` or else `async_redis_url`, files under
        `batch_allowed_roots`) and this replica's chunk runner; None when either is empty (BatchJobService
        then refuses)."""
        s = self.settings
        redis_url = s.batch_redis_url or s.async_redis_url
        if not (redis_url and s.batch_allowed_roots):
            return None
        store = RedisJobStore(redis_url, job_ttl_s=s.batch_job_ttl_s, tls=s.redis_tls)
        stack.push_async_callback(store.close)
        files = ArrowJobFiles()
        jobs = BatchJobs(
            store,
            files,
            PathPolicy(s.batch_allowed_roots),
            BatchLimits(
                default_chunk_rows=s.batch_chunk_rows,
                max_chunk_rows=s.batch_max_chunk_rows,
                max_rows=s.batch_max_rows,
                job_ttl_s=s.batch_job_ttl_s,
            ),
        )
        if s.batch_worker:
            scorer = ChunkScorer(
                predictor,
                admission,
                ScoringLimits(
                    items_per_call=min(s.batch_items_per_call, s.max_batch_items),
                    call_timeout_s=s.batch_call_timeout_ms / 1e3,
                    yield_max_s=s.batch_yield_max_ms / 1e3,
                    duty_cycle=s.batch_duty_cycle,
                ),
            )
            runner = BatchRunner(
                store,
                files,
                scorer,
                RunnerLimits(
                    lease_s=s.batch_lease_ms / 1e3,
                    poll_s=s.batch_poll_ms / 1e3,
                    workers=s.batch_workers,
                    job_ttl_s=s.batch_job_ttl_s,
                ),
                worker_id=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
                on_chunk=self.metrics.batch_chunk_done,
            )
            stack.push_async_callback(runner.stop)  # before the store closes and the predictor drains (LIFO)
            runner.start()
        return jobs

    def _pace(self) -> Pace | None:
        """The adaptive pace of background work (None when `batch_pace` is off), exported as metrics."""
        s = self.settings
        if not s.batch_pace:
            return None
        most = max(1, min(s.batch_items_per_call, s.max_batch_items))
        pace = Pace(
            PaceLimits(
                min_items=min(s.batch_pace_min_items, most),
                max_items=most,
                start_items=min(s.batch_pace_start_items, most),
                increase_items=s.batch_pace_increase_items,
                tolerance=s.batch_pace_latency_tolerance,
                window=s.batch_pace_verdict_requests,
                floor_s=s.batch_pace_latency_floor_ms / 1e3,
                max_pause_s=s.batch_pace_max_pause_ms / 1e3,
                idle_s=s.batch_pace_idle_ms / 1e3,
                max_call_s=s.batch_pace_max_call_ms / 1e3,
                idle_max_call_s=s.batch_pace_idle_max_call_ms / 1e3,
            )
        )
        self.metrics.watch_pace(pace)
        return pace

    async def _open_cache(self, stack: AsyncExitStack) -> PredictionCache:
        """The prediction cache (used only by routes with a `cache` policy); with `cache_redis_url`
        its shared level and the task following the ingestion service's invalidations."""
        s = self.settings
        if not s.cache_redis_url:
            return PredictionCache(s.cache_max_entries)
        errors = self.metrics.cache_lookups
        shared = open_shared_cache(
            s.cache_redis_url,
            s.cache_timeout_ms / 1e3,
            on_error=lambda op: errors.labels("", f"error_{op}").inc(),
            tls=s.redis_tls,
        )
        stack.push_async_callback(shared.close)
        if isinstance(shared, ClusterSharedCache):
            expose_count(
                stack,
                self.metrics.registry,
                "predmesh_gateway_cache_cluster_fallbacks",
                "Cache lookups/stores the per-master fast path could not serve (MOVED/ASK, a dead master): "
                "sent through the cluster client.",
                lambda: shared.fallbacks,
            )
        cache = PredictionCache(s.cache_max_entries, shared)
        subscribed = asyncio.Event()
        task = asyncio.create_task(shared.run_invalidations(cache.invalidate_entity, cache.clear, subscribed))

        async def stop_task() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        stack.push_async_callback(stop_task)
        try:  # serve with the subscription on when Redis is there; never refuse to start for the cache
            await asyncio.wait_for(subscribed.wait(), max(1.0, s.cache_timeout_ms / 1e3))
        except TimeoutError:
            log.warning("prediction cache: invalidation subscription not up yet; retrying in background")
        return cache

    async def open(self, stack: AsyncExitStack) -> None:
        s = self.settings
        grace_s = s.grace_s
        await self._open_auth(stack)  # first: nothing is opened when the gateway must not start
        telemetry.configure_tracing(s)  # before the channels: they get tracing interceptors only when on
        tls = client_tls(s)  # mTLS to the mesh with the gateway's certificate (None = plaintext)
        sink = self._sink
        if sink is None and s.logger_target:
            logger = LoggerClient(
                s.logger_target, max_pending=s.logger_buffer, max_wait_s=s.logger_max_wait_ms / 1e3, tls=tls
            )
            stack.push_async_callback(logger.stop, grace_s)  # last: flushes what the drains below logged
            await logger.start()
            sink = LoggerSink(logger)
        callbacks = CallbackClient()
        stack.push_async_callback(callbacks.close)
        # Both upstreams may be several replicas (`ipv4:a,b` or a headless service's dns:///): round_robin,
        # and a call that fails UNAVAILABLE on a dying replica is re-sent to another (reads, idempotent).
        features_channel = channel(s.features_target, tls, extra_options=RETRY_UNAVAILABLE_OPTIONS)
        stack.push_async_callback(features_channel.close)
        inference_channel = channel(s.inference_target, tls, extra_options=RETRY_UNAVAILABLE_OPTIONS)
        stack.push_async_callback(inference_channel.close)
        models = InferenceClient(inference_channel)
        features = FeaturesClient(features_channel)
        breakers = BreakerRegistry(s.breaker_failures, s.breaker_reset_ms / 1e3)
        cache = await self._open_cache(stack)
        predictor = Predictor(
            features=features,
            models=models,
            catalog=ModelCatalog(models, s.model_cache_ttl_ms / 1e3),
            sink=sink,
            limits=PredictorLimits(
                features_timeout_s=s.features_timeout_ms / 1e3,
                inference_timeout_s=s.inference_timeout_ms / 1e3,
                features_timeout_per_item_s=s.features_timeout_per_item_ms / 1e3,
                inference_timeout_per_item_s=s.inference_timeout_per_item_ms / 1e3,
                max_batch_items=s.max_batch_items,
                min_inference_budget_s=s.min_inference_budget_ms / 1e3,
                max_shadow_inflight=s.max_shadow_inflight,
                log_features_sample=s.log_features_sample,
                coalesce_max_rows=s.coalesce_max_rows,
                coalesce_max_wait_s=s.coalesce_max_wait_ms / 1e3,
                coalesce_max_inflight=s.coalesce_max_inflight,
                shadow_max_wait_s=s.shadow_max_wait_ms / 1e3,
            ),
            breakers=breakers,
            metrics=self.metrics,
            cache=cache,
        )
        stack.push_async_callback(predictor.drain, grace_s)  # shadows, before the channels close
        self.predictor = predictor
        if s.routing_path:
            watcher = RoutingFileWatcher(
                Path(s.routing_path),
                predictor.set_routing,
                s.routing_poll_ms / 1e3,
                lambda result: self.metrics.routing_reloads.labels(result).inc(),
            )
            stack.push_async_callback(watcher.stop)
            await watcher.start()
        dispatcher = AsyncDispatcher(
            predictor,
            callbacks,
            max_pending=s.max_pending_async,
            deadline_s=s.default_deadline_ms / 1e3,
            attempts=s.callback_attempts,
            attempt_timeout_s=s.callback_timeout_ms / 1e3,
            policy=CallbackPolicy(s.callback_hosts, s.callback_ports, s.callback_blocked_networks),
        )
        stack.push_async_callback(dispatcher.drain, grace_s)
        admission = LaneAdmission(
            s.max_inflight,
            s.async_lane_share,
            s.batch_lane_share,
            s.overload_retry_after_ms,
            on_refused=lambda lane: self.metrics.lane_refused.labels(lane).inc(),
            pace=self._pace(),
        )
        durable = await self._open_durable_async(stack, predictor, callbacks, admission)
        batch_jobs = await self._open_batch_jobs(stack, predictor, admission)
        stats = ModelStats(window_s=s.health_window_s)
        health = ModelHealthReporter(
            OrchestratorInventory(inference_channel), features, breakers, stats, lambda: predictor.routing
        )
        # In-memory failed deliveries plus durable dead letters (both count against the alert).
        self.metrics.async_dead_letters.set_function(
            lambda: dispatcher.failed_deliveries + (self._sender.dead_lettered if self._sender else 0)
        )
        servicer = PredictionServicer(
            predictor,
            dispatcher,
            self.authorizer,
            s.default_deadline_ms / 1e3,
            s.max_batch_items,
            durable=durable,
            admission=admission,
            stats=stats,
            health=health,
        )
        server = GrpcServer(s, registry=self.metrics.registry)
        server.add_servicer(
            prediction_pb2_grpc.add_PredictionServiceServicer_to_server,
            servicer,
            "predmesh.v1.PredictionService",
        )
        outcome_sink: OutcomeSink | None = sink if hasattr(sink, "emit_outcome") else None  # type: ignore[assignment]
        self.outcomes = OutcomeRecorder(outcome_sink)
        server.add_servicer(
            outcomes_pb2_grpc.add_OutcomeServiceServicer_to_server,
            OutcomeServicer(self.outcomes, self.authorizer),
            "predmesh.v1.OutcomeService",
        )
        server.add_servicer(
            batchjobs_pb2_grpc.add_BatchJobServiceServicer_to_server,
            BatchJobServicer(batch_jobs, self.authorizer),
            "predmesh.v1.BatchJobService",
        )
        if s.reflection:
            server.enable_reflection()
        await self.serve(stack, server)
        log.info("gateway serving on %s", server.address)


def main() -> None:
    run_app(GatewaySettings, GatewayApp)


if __name__ == "__main__":
    main()
