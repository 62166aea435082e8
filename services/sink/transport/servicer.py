"""AnalyticsService servicer: a read-only query against the store, rows back as JSON."""

from __future__ import annotations

import asyncio
import json

import grpc

from predmesh.v1 import analytics_pb2, analytics_pb2_grpc
from services.sink.core.store import AnalyticsStore, check_read_only


class AnalyticsServicer(analytics_pb2_grpc.AnalyticsServiceServicer):
    def __init__(self, store: AnalyticsStore, max_rows: int) -> None:
        self._store = store
        self._max_rows = max_rows

    async def Query(
        self, request: analytics_pb2.QueryRequest, context: grpc.aio.ServicerContext
    ) -> analytics_pb2.QueryResponse:
        sql = check_read_only(request.sql)
        limit = min(request.max_rows or self._max_rows, self._max_rows)
        result = await asyncio.to_thread(self._store.query, sql)
        rows = result.rows[:limit]
        return analytics_pb2.QueryResponse(
            columns=list(result.columns),
            rows_json=json.dumps(rows, default=str),
            truncated=len(result.rows) > limit,
        )
