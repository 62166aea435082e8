"""Logger errors; each maps to one gRPC status in the shared ErrorInterceptor."""

from __future__ import annotations

from predmesh.clients.events import InvalidEvent
from predmesh.common.errors import PredmeshError, Unavailable

__all__ = ["InvalidEvent", "JournalCorrupt", "JournalError", "JournalFull"]


class JournalFull(Unavailable):
    """The on-disk journal reached its byte limit (Kafka down for too long); callers retry later."""


class JournalError(PredmeshError):
    """The journal could not be written or read (disk error, corruption). Reported as INTERNAL."""


class JournalCorrupt(JournalError):
    """A sealed journal segment failed its CRC check; refusing to guess which records are valid."""


class JournalWriteFailed(Unavailable):
    """A journal write failed part-way (disk full, I/O error); it was undone, the caller retries later."""
