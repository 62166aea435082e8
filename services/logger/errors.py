"""Logger errors; each maps to one gRPC status in the shared ErrorInterceptor."""

from __future__ import annotations

from predmesh.common.errors import InvalidArgument, PredmeshError, Unavailable


class InvalidEvent(InvalidArgument):
    """An event in a batch is malformed; the whole batch is rejected, nothing of it is journaled."""


class JournalFull(Unavailable):
    """The on-disk journal reached its byte limit (Kafka down for too long); callers retry later."""


class JournalError(PredmeshError):
    """The journal could not be written or read (disk error, corruption). Reported as INTERNAL."""


class JournalCorrupt(JournalError):
    """A sealed journal segment failed its CRC check; refusing to guess which records are valid."""
