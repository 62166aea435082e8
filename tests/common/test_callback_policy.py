"""SSRF checks of callback targets: syntax, ports, per-key allow-list, internal addresses."""

from __future__ import annotations

import pytest

from predmesh.common.callback_policy import CallbackPolicy
from predmesh.common.errors import InvalidArgument, PermissionDenied


def resolver(answers: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers[host]

    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


@pytest.mark.parametrize(
    "target",
    ["127.0.0.1:99999", "no-port", "host:", ":8443", "a b:8443", "x\n:8443", "http://x:8443/path", "x" * 400 + ":1"],
)
async def test_malformed_targets_are_invalid_argument(target: str) -> None:
    with pytest.raises(InvalidArgument):
        await CallbackPolicy(["*"], resolver=resolver({})).check(target, ())


@pytest.mark.parametrize(
    ("target", "answers"),
    [
        ("127.0.0.1:8443", {"127.0.0.1": ["127.0.0.1"]}),
        ("169.254.169.254:8080", {"169.254.169.254": ["169.254.169.254"]}),
        ("10.0.0.1:8443", {"10.0.0.1": ["10.0.0.1"]}),
        ("[::1]:8443", {"::1": ["::1"]}),
        ("metadata.internal:8443", {"metadata.internal": ["169.254.169.254"]}),
        ("rebind.example.com:8443", {"rebind.example.com": ["93.184.216.34", "10.1.2.3"]}),
        ("svc.example.com:8443", {"svc.example.com": ["100.64.1.1"]}),
        ("mapped.example.com:8443", {"mapped.example.com": ["::ffff:127.0.0.1"]}),
    ],
)
async def test_internal_addresses_are_refused(target: str, answers: dict[str, list[str]]) -> None:
    policy = CallbackPolicy(["*"], resolver=resolver(answers))
    with pytest.raises(PermissionDenied):
        await policy.check(target, ())


async def test_port_range_and_allow_list_come_before_resolution() -> None:
    resolve = resolver({"hooks.example.com": ["93.184.216.34"]})
    policy = CallbackPolicy(resolver=resolve, ports="443,8000-9000")
    with pytest.raises(PermissionDenied):
        await policy.check("hooks.example.com:22", ["hooks.example.com"])
    with pytest.raises(PermissionDenied):
        await policy.check("hooks.example.com:8443", [])  # no callback_hosts for this key
    with pytest.raises(PermissionDenied):
        await policy.check("evil.example.org:8443", ["hooks.example.com"])
    assert resolve.asked == []  # type: ignore[attr-defined]
    checked = await policy.check("https://HOOKS.example.com:443", ["*.example.com"])
    assert (checked.host, checked.port, checked.tls, checked.dial) == (
        "hooks.example.com",
        443,
        True,
        "ipv4:93.184.216.34:443",
    )


async def test_blocked_networks_and_explicit_internal_allow_list() -> None:
    answers = {"hooks.example.com": ["203.0.113.7"], "10.1.2.3": ["10.1.2.3"], "127.0.0.1": ["127.0.0.1"]}
    policy = CallbackPolicy(resolver=resolver(answers), blocked_networks=["203.0.113.0/24"])
    with pytest.raises(PermissionDenied):
        await policy.check("hooks.example.com:8443", ["hooks.example.com"])
    # An internal address is reachable only when an IP/CIDR entry names it.
    assert (await policy.check("10.1.2.3:8443", ["10.1.0.0/16"])).address == "10.1.2.3"
    assert (await policy.check("127.0.0.1:8443", ["127.0.0.1"])).dial == "ipv4:127.0.0.1:8443"
    with pytest.raises(PermissionDenied):
        await policy.check("127.0.0.1:8443", ["127.0.0.*"])  # a name pattern never unlocks an internal address


async def test_webhook_urls_use_the_same_checks() -> None:
    resolve = resolver({"ml.example.com": ["93.184.216.34"], "in.example.com": ["10.2.3.4"]})
    policy = CallbackPolicy(["*.example.com"], resolver=resolve)
    target, path = await policy.check_url("https://ML.example.com/hooks/retrain?team=risk")
    assert (target.host, target.port, target.tls, target.address) == ("ml.example.com", 443, True, "93.184.216.34")
    assert path == "/hooks/retrain?team=risk"
    target, path = await policy.check_url("http://ml.example.com:8080")
    assert (target.port, target.tls, path) == (8080, False, "/")
    for bad in ("ftp://ml.example.com/x", "https://user:pw@ml.example.com/x", "https:///x", "ml.example.com/x", ""):
        with pytest.raises(InvalidArgument):
            await policy.check_url(bad)
    for refused in ("http://ml.example.com/x", "https://ml.example.org/x", "https://in.example.com/x"):
        with pytest.raises(PermissionDenied):  # port 80 not allowed, host not listed, internal address
            await policy.check_url(refused)
    with pytest.raises(PermissionDenied):
        await CallbackPolicy(resolver=resolve).check_url("https://ml.example.com/x")  # empty allow-list
