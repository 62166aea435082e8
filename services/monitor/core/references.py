"""Reference statistics per model version, read from the model repository and cached.

`ReferenceStore(root)(model, version)` returns `<root>/<model>/<version>/reference.json`
parsed, or None when absent or unreadable (logged once). Entries are re-read after
`ttl_s` so a reference written after the monitor started is picked up. Thread-safe.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from services.monitor.core.reference import Reference, load_reference

log = logging.getLogger(__name__)


class ReferenceStore:
    def __init__(self, root: Path | None, ttl_s: float = 60.0) -> None:
        self._root = Path(root) if root else None
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, Reference | None]] = {}

    def __call__(self, model: str, version: str) -> Reference | None:
        if self._root is None or not model or not version or "/" in model + version or ".." in model + version:
            return None
        key = (model, version)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < self._ttl_s:
                return hit[1]
        try:
            reference = load_reference(self._root / model / version)
        except (OSError, ValueError, KeyError, TypeError) as err:
            if hit is None:
                log.warning("reference for %s:%s unreadable: %s", model, version, err)
            reference = None
        with self._lock:
            self._cache[key] = (now, reference)
        return reference
