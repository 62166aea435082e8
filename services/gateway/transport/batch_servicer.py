"""BatchJobService servicer: protobuf in, core call (core/batch_jobs.py), protobuf out."""

from __future__ import annotations

import grpc

from predmesh.common.errors import FailedPrecondition
from predmesh.v1 import batchjobs_pb2, batchjobs_pb2_grpc
from services.gateway.core.auth import ApiKeyAuthorizer
from services.gateway.core.batch_jobs import BatchJobs, Submission
from services.gateway.core.batch_ports import JobState, JobStatus
from services.gateway.errors import InvalidArgument
from services.gateway.transport.servicer import api_key

_STATES = {
    JobState.QUEUED: batchjobs_pb2.BATCH_JOB_STATE_QUEUED,
    JobState.RUNNING: batchjobs_pb2.BATCH_JOB_STATE_RUNNING,
    JobState.DONE: batchjobs_pb2.BATCH_JOB_STATE_DONE,
    JobState.FAILED: batchjobs_pb2.BATCH_JOB_STATE_FAILED,
    JobState.CANCELLED: batchjobs_pb2.BATCH_JOB_STATE_CANCELLED,
}


def job_to_pb(status: JobStatus, now_ms: int) -> batchjobs_pb2.BatchJob:
    spec = status.spec
    rate, eta = status.rate(now_ms)
    return batchjobs_pb2.BatchJob(
        job_id=spec.job_id,
        state=_STATES[status.state],
        model=spec.model,
        version=spec.version,
        input=spec.input,
        output=spec.output,
        chunk_rows=spec.chunk_rows,
        rows_total=spec.rows_total,
        rows_done=status.rows_done,
        rows_failed=status.rows_failed,
        rows_per_s=rate,
        eta_s=eta,
        chunks_total=spec.chunks_total,
        chunks_done=status.chunks_done,
        error=status.error,
        created_ms=spec.created_ms,
        finished_ms=status.finished_ms,
    )


class BatchJobServicer(batchjobs_pb2_grpc.BatchJobServiceServicer):
    """`jobs` None = batch jobs are off on this gateway (FAILED_PRECONDITION after authentication)."""

    def __init__(self, jobs: BatchJobs | None, authorizer: ApiKeyAuthorizer) -> None:
        self._jobs = jobs
        self._auth = authorizer

    def _enabled(self) -> BatchJobs:
        if self._jobs is None:
            raise FailedPrecondition(
                "batch jobs are not enabled on this gateway (PREDMESH_GATEWAY_ASYNC_REDIS_URL and "
                "PREDMESH_GATEWAY_BATCH_ALLOWED_ROOTS)"
            )
        return self._jobs

    async def SubmitBatchJob(
        self, request: batchjobs_pb2.SubmitBatchJobRequest, context: grpc.aio.ServicerContext
    ) -> batchjobs_pb2.BatchJob:
        if not request.model:
            self._auth.identify(api_key(context))
            raise InvalidArgument("model is required")
        grant = self._auth.check(api_key(context), request.model)
        jobs = self._enabled()
        status = await jobs.submit(
            Submission(
                owner=grant.name,
                model=request.model,
                version=request.version,
                input=request.input,
                output=request.output,
                chunk_rows=request.chunk_rows,
                entity_column=request.entity_column,
                job_id=request.job_id,
            )
        )
        return job_to_pb(status, jobs.now_ms())

    async def GetBatchJob(
        self, request: batchjobs_pb2.GetBatchJobRequest, context: grpc.aio.ServicerContext
    ) -> batchjobs_pb2.BatchJob:
        grant = self._auth.identify(api_key(context))
        jobs = self._enabled()
        return job_to_pb(await jobs.get(grant.name, request.job_id), jobs.now_ms())

    async def CancelBatchJob(
        self, request: batchjobs_pb2.CancelBatchJobRequest, context: grpc.aio.ServicerContext
    ) -> batchjobs_pb2.BatchJob:
        grant = self._auth.identify(api_key(context))
        jobs = self._enabled()
        return job_to_pb(await jobs.cancel(grant.name, request.job_id), jobs.now_ms())
