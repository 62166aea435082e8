"""Errors of the ingestion service (raised inside the consumer loop, never to an RPC caller)."""

from __future__ import annotations

from predmesh.common.errors import Unavailable


class WriteFailed(Unavailable):
    """Redis could not be written; the batch is retried and its offsets are not committed."""
