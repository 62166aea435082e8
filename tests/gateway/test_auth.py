"""API keys: hashed storage, fail-closed default, model grants, per-key token buckets, rotation."""

from __future__ import annotations

import pytest

from services.gateway.core.auth import (
    ANONYMOUS,
    ApiKeyAuthorizer,
    KeyTableError,
    hashed_spec,
    load_key_file,
    merge_tables,
    parse_key_table,
)
from services.gateway.errors import PermissionDenied, ResourceExhausted, Unauthenticated


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_no_keys_refuses_everyone_unless_anonymous_is_allowed() -> None:
    closed = ApiKeyAuthorizer()
    assert closed.enabled
    with pytest.raises(Unauthenticated):
        closed.check(None, "fraud")
    with pytest.raises(Unauthenticated):
        closed.check("anything", "fraud")
    assert ApiKeyAuthorizer(allow_anonymous=True).check(None, "fraud") is ANONYMOUS


def test_keys_are_stored_hashed_and_grant_models() -> None:
    table = parse_key_table({"plain-key": ["fraud"], hashed_spec("admin-key"): ["*"]})
    assert all(b"plain-key" not in g.digest and len(g.digest) == 32 for g in table.grants)
    auth = ApiKeyAuthorizer(table)
    assert auth.check("plain-key", "fraud").models == {"fraud"}
    assert auth.check("admin-key", "anything").models == {"*"}
    with pytest.raises(PermissionDenied):
        auth.check("plain-key", "churn")
    with pytest.raises(Unauthenticated):
        auth.check("plain-kez", "fraud")
    with pytest.raises(Unauthenticated):
        auth.check(None, "fraud")


def test_per_key_token_bucket() -> None:
    clock = Clock()
    table = parse_key_table({"k1": {"models": ["*"], "rate_per_s": 2, "burst": 2}, "k2": ["*"]})
    auth = ApiKeyAuthorizer(table, clock=clock)
    auth.check("k1", "m")
    auth.check("k1", "m")
    with pytest.raises(ResourceExhausted):
        auth.check("k1", "m")
    for _ in range(10):
        auth.check("k2", "m")  # another key is not affected, and unlimited
    clock.now += 0.5  # one token back
    auth.check("k1", "m")
    with pytest.raises(ResourceExhausted):
        auth.check("k1", "m")


def test_rotation_swaps_the_table() -> None:
    auth = ApiKeyAuthorizer(load_key_file([b'{"old-key": ["*"]}']))
    auth.check("old-key", "fraud")
    auth.set_table(merge_tables(parse_key_table({}), load_key_file([b"new-key: ['*']\n"])))
    auth.check("new-key", "fraud")
    with pytest.raises(Unauthenticated):
        auth.check("old-key", "fraud")


@pytest.mark.parametrize(
    "data",
    [["k"], {"k": "fraud"}, {"k": {"models": "fraud"}}, {"k": {"models": ["*"], "rate_per_s": -1}}, {"k": {"x": 1}}],
)
def test_bad_tables_are_rejected(data: object) -> None:
    with pytest.raises(KeyTableError):
        parse_key_table(data)
