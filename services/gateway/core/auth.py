"""API-key authorization: which keys may call which models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from services.gateway.errors import PermissionDenied, Unauthenticated


class ApiKeyAuthorizer:
    """Immutable key -> allowed-models table. An empty table disables auth."""

    def __init__(self, keys: Mapping[str, Sequence[str]]) -> None:
        self._keys = {key: frozenset(models) for key, models in keys.items()}

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check(self, api_key: str | None, model: str) -> None:
        if not self._keys:
            return
        if not api_key:
            raise Unauthenticated("missing API key (metadata 'x-api-key' or 'authorization: Bearer <key>')")
        allowed = self._keys.get(api_key)
        if allowed is None:
            raise Unauthenticated("unknown API key")
        if "*" not in allowed and model not in allowed:
            raise PermissionDenied(f"API key may not call model {model!r}")
