"""API-key authentication, authorization and per-key rate limits.

Keys are kept only as SHA-256 digests. A presented key is hashed and compared with every
stored digest in constant time (`hmac.compare_digest`, no early exit), so neither the
comparison nor the table order tells an attacker how close a guess was.

A key table maps a key spec to what the key may do:

    {"<plaintext key>": ["fraud"],                      # hashed when loaded
     "sha256:<64 hex digits>": ["*"],                   # already hashed (what the chart renders)
     "sha256:<...>": {"models": ["fraud"], "rate_per_s": 50, "burst": 100,
                      "callback_hosts": ["*.hooks.example.com"], "name": "team-a",
                      "priority": "batch"}}               # default class (realtime, async, batch)

`ApiKeyAuthorizer` holds the current table (swapped atomically on rotation) and one token
bucket per key. With no keys it refuses every call unless built with `allow_anonymous`.
One event loop; not thread-safe.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.gateway.core.priority import Priority
from services.gateway.errors import PermissionDenied, ResourceExhausted, Unauthenticated

_HASHED = re.compile(r"sha256:([0-9a-f]{64})")
MAX_KEY_LENGTH = 512


class KeyTableError(ValueError):
    """A key table that cannot be used (bad spec, bad field)."""


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def hashed_spec(key: str) -> str:
    """The `sha256:<hex>` spec of a plaintext key (what to store instead of the key)."""
    return "sha256:" + hash_key(key).hex()


@dataclass(frozen=True)
class KeyGrant:
    """What one key may do. `name` labels it in logs and metrics (never the key itself)."""

    digest: bytes
    name: str
    models: frozenset[str]
    rate_per_s: float = 0.0  # 0 = unlimited
    burst: float = 0.0
    callback_hosts: tuple[str, ...] = ()
    priority: Priority = Priority.REALTIME  # default class; requests may ask only for this one or lower

    def may_call(self, model: str) -> bool:
        return "*" in self.models or model in self.models


ANONYMOUS = KeyGrant(digest=b"", name="anonymous", models=frozenset({"*"}))


@dataclass(frozen=True)
class KeyTable:
    grants: tuple[KeyGrant, ...] = ()
    revision: str = ""

    def __len__(self) -> int:
        return len(self.grants)


def _grant(spec: str, value: Any, defaults: Mapping[str, float]) -> KeyGrant:
    if not isinstance(spec, str) or not spec:
        raise KeyTableError("a key must be a non-empty string")
    match = _HASHED.fullmatch(spec)
    digest = bytes.fromhex(match.group(1)) if match else hash_key(spec)
    if isinstance(value, list | tuple):
        value = {"models": value}
    if not isinstance(value, dict):
        raise KeyTableError(
            "each key maps to a list of models or to {models, rate_per_s, burst, callback_hosts, priority}"
        )
    unknown = set(value) - {"models", "rate_per_s", "burst", "callback_hosts", "name", "priority"}
    if unknown:
        raise KeyTableError(f"unknown key fields {sorted(unknown)}")
    models = value.get("models", [])
    hosts = value.get("callback_hosts", [])
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        raise KeyTableError("models must be a list of model names ('*' = all)")
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
        raise KeyTableError("callback_hosts must be a list of host patterns")
    try:
        rate = float(value.get("rate_per_s", defaults.get("rate_per_s", 0.0)))
        burst = float(value.get("burst", defaults.get("burst", 0.0)) or max(rate, 1.0))
    except (TypeError, ValueError) as err:
        raise KeyTableError("rate_per_s and burst must be numbers") from err
    if rate < 0 or burst < 0:
        raise KeyTableError("rate_per_s and burst must not be negative")
    try:
        priority = Priority.parse(str(value.get("priority", "realtime")))
    except ValueError as err:
        raise KeyTableError(str(err)) from None
    name = str(value.get("name") or "key-" + digest.hex()[:8])
    return KeyGrant(digest, name, frozenset(models), rate, burst, tuple(h.lower() for h in hosts), priority)


def parse_key_table(data: Any, defaults: Mapping[str, float] | None = None) -> KeyTable:
    """Validate a key table (see the module docstring); plaintext keys are hashed here."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise KeyTableError("a key table is a mapping of key -> models")
    grants = tuple(_grant(spec, value, defaults or {}) for spec, value in data.items())
    revision = hashlib.sha256(b"".join(sorted(g.digest for g in grants))).hexdigest()[:12]
    return KeyTable(grants, revision)


@dataclass
class TokenBucket:
    rate_per_s: float
    burst: float
    tokens: float = field(default=-1.0)
    updated: float = 0.0

    def take(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.updated = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class ApiKeyAuthorizer:
    """Checks a presented key against the current table; `set_table` swaps it (rotation)."""

    def __init__(
        self,
        table: KeyTable | None = None,
        allow_anonymous: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._table = table or KeyTable()
        self._allow_anonymous = allow_anonymous
        self._clock = clock
        self._buckets: dict[bytes, TokenBucket] = {}

    @property
    def enabled(self) -> bool:
        """True while calls need a key (keys configured, or anonymous access not allowed)."""
        return bool(self._table.grants) or not self._allow_anonymous

    @property
    def table(self) -> KeyTable:
        return self._table

    def set_table(self, table: KeyTable) -> None:
        self._table = table
        live = {g.digest for g in table.grants}
        self._buckets = {d: b for d, b in self._buckets.items() if d in live}

    def _lookup(self, api_key: str) -> KeyGrant | None:
        presented = hash_key(api_key)
        found: KeyGrant | None = None
        for grant in self._table.grants:  # no early exit: the time does not depend on which key matched
            if hmac.compare_digest(grant.digest, presented):
                found = grant
        return found

    def identify(self, api_key: str | None) -> KeyGrant:
        """The caller's grant without a model check (GetPrediction); raises Unauthenticated."""
        if not self._table.grants and self._allow_anonymous:
            return ANONYMOUS
        grant = self._lookup(api_key) if api_key and len(api_key) <= MAX_KEY_LENGTH else None
        if grant is None:
            raise Unauthenticated("missing or unknown API key")
        self._take_token(grant)  # polling counts against the key's rate limit like any call
        return grant

    def check(self, api_key: str | None, model: str) -> KeyGrant:
        """The caller's grant for calling `model`; raises Unauthenticated/PermissionDenied/ResourceExhausted."""
        if not self._table.grants and self._allow_anonymous:
            return ANONYMOUS
        if not api_key:
            raise Unauthenticated("missing API key (metadata 'x-api-key' or 'authorization: Bearer <key>')")
        if len(api_key) > MAX_KEY_LENGTH:
            raise Unauthenticated("unknown API key")
        grant = self._lookup(api_key)
        if grant is None:
            raise Unauthenticated("unknown API key")
        if not grant.may_call(model):
            raise PermissionDenied(f"API key may not call model {model!r}")
        self._take_token(grant)
        return grant

    def _take_token(self, grant: KeyGrant) -> None:
        if grant.rate_per_s > 0:
            bucket = self._buckets.get(grant.digest)
            if bucket is None or bucket.rate_per_s != grant.rate_per_s or bucket.burst != grant.burst:
                bucket = self._buckets[grant.digest] = TokenBucket(grant.rate_per_s, grant.burst)
            if not bucket.take(self._clock()):
                raise ResourceExhausted("rate limit of this API key exceeded")


def load_key_file(contents: list[bytes], defaults: Mapping[str, float] | None = None) -> KeyTable:
    """Parse a key file's bytes (YAML or JSON, the table format above). Blocking-free, pure."""
    import yaml

    try:
        data = yaml.safe_load(contents[0]) if contents else None
    except yaml.YAMLError as err:
        raise KeyTableError(f"key file is not valid YAML/JSON: {err}") from None
    return parse_key_table(data, defaults)


def merge_tables(*tables: KeyTable) -> KeyTable:
    """One table with every grant (a later table's grant wins for the same digest)."""
    by_digest: dict[bytes, KeyGrant] = {}
    for table in tables:
        by_digest.update((g.digest, g) for g in table.grants)
    grants = tuple(by_digest.values())
    revision = hashlib.sha256(b"".join(sorted(by_digest))).hexdigest()[:12]
    return KeyTable(grants, revision)
