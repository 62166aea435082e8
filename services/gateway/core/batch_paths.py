"""Which files a batch job may read and write: only under the configured allowed roots.

A root is an absolute local directory (`/data/batch`) or a URL prefix (`s3://bucket/scoring/`,
`memory://batch/`). A location is a local path (absolute; or `file://` URL) or a URL:
- local: resolved with `os.path.realpath` (symlinks and `..` followed) and allowed only inside a
  local root's resolved directory; the resolved path is what the job then uses;
- URL: no `..`/`.` segments, query or fragment; allowed only when it starts with a URL root of the
  same scheme and host (compared segment-wise, so `s3://b/scoring-x` is not under `s3://b/scoring`).
Anything else is PermissionDenied (the message names the location the caller gave, never a root).
No roots = no location is allowed. `check` touches the local file system (realpath): call it from a
thread in async code. Immutable after construction; thread-safe.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence
from urllib.parse import urlsplit

from services.gateway.errors import InvalidArgument, PermissionDenied

MAX_LOCATION_CHARS = 1024


def _is_url(location: str) -> bool:
    return len(urlsplit(location).scheme) > 1


class PathPolicy:
    def __init__(self, roots: Sequence[str]) -> None:
        self._local: list[str] = []
        self._urls: list[tuple[str, str, str]] = []  # (scheme, host, path prefix ending in "/")
        for root in roots:
            if not root.strip():
                continue
            if _is_url(root) and urlsplit(root).scheme != "file":
                parts = urlsplit(root)
                prefix = posixpath.normpath("/" + parts.path.lstrip("/")).rstrip("/") + "/"
                self._urls.append((parts.scheme.lower(), parts.netloc, prefix))
            else:
                path = urlsplit(root).path if _is_url(root) else root
                if not os.path.isabs(path):
                    raise ValueError(f"batch allowed root {root!r} must be an absolute directory or a URL")
                self._local.append(os.path.realpath(path))

    @property
    def enabled(self) -> bool:
        return bool(self._local or self._urls)

    def check(self, location: str, what: str) -> str:
        """The normalized location when it is allowed; InvalidArgument / PermissionDenied otherwise."""
        if not location:
            raise InvalidArgument(f"{what} is required")
        if len(location) > MAX_LOCATION_CHARS or "\x00" in location:
            raise InvalidArgument(f"{what} is not a valid path or URL")
        if _is_url(location) and urlsplit(location).scheme != "file":
            return self._check_url(location, what)
        parts = urlsplit(location)
        if _is_url(location) and parts.netloc not in ("", "localhost"):
            raise PermissionDenied(f"{what} {location!r} is not under an allowed location")
        path = parts.path if _is_url(location) else location
        if not os.path.isabs(path):
            raise InvalidArgument(f"{what} must be an absolute path or a URL")
        real = os.path.realpath(path)
        if any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in self._local):
            return real
        raise PermissionDenied(f"{what} {location!r} is not under an allowed location")

    def _check_url(self, location: str, what: str) -> str:
        parts = urlsplit(location)
        segments = parts.path.split("/")
        if parts.query or parts.fragment or any(s in ("..", ".") for s in segments) or "\\" in parts.path:
            raise PermissionDenied(f"{what} {location!r} is not under an allowed location")
        path = "/" + parts.path.lstrip("/")
        scheme = parts.scheme.lower()
        for root_scheme, host, prefix in self._urls:
            if scheme == root_scheme and parts.netloc == host and path.startswith(prefix) and len(path) > len(prefix):
                return f"{scheme}://{parts.netloc}{path}"
        raise PermissionDenied(f"{what} {location!r} is not under an allowed location")
