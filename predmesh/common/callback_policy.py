"""Which callback targets a service may dial (SSRF protection): the gateway's PredictAsync
callbacks (`check`) and HTTP webhooks such as the drift monitor's retraining webhook (`check_url`).

A callback target is `host:port` (plaintext gRPC) or `https://host:port` / `grpcs://host:port`
(TLS, verified against the system roots). Before anything is dialled:

1. syntax: a host name or IP literal and a port inside `ports` (default 443 and 1024-65535);
2. the host must match the caller's allow-list: its API key's `callback_hosts` plus the
   gateway-wide `allowed_hosts` (patterns like `hooks.example.com`, `*.example.com`, an IP
   or a CIDR such as `10.1.0.0/16`); no patterns = no callbacks;
3. the name is resolved once, and every resolved address must be public: loopback,
   link-local (169.254.0.0/16, the cloud metadata service), private, shared (100.64/10),
   multicast, reserved, unspecified and the configured `blocked_networks` (cluster pod and
   service ranges) are refused unless an allow-list entry is an IP/CIDR that contains the
   address. The result pins the checked address, so the delivery dials exactly that IP
   (a DNS answer that changes later cannot redirect it).

A webhook URL is `http(s)://host[:port][/path][?query]` (default ports 80/443; no user info)
and goes through steps 1-3 the same way (`check_url` returns the pinned target and the path).

Refusals raise InvalidArgument (malformed) or PermissionDenied (not allowed) before any
connection attempt. `resolve` is async (the loop's resolver thread); the rest is pure.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from predmesh.common.errors import InvalidArgument, PermissionDenied

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_TARGET = re.compile(
    r"(?:(?P<scheme>https|grpcs|http|grpc)://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^:/\[\]]+):(?P<port>[0-9]{1,5})"
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")
MAX_TARGET_LENGTH = 300
DEFAULT_PORTS = "443,1024-65535"

Resolver = Callable[[str, int], Awaitable[list[str]]]


@dataclass(frozen=True)
class CallbackTarget:
    """A checked target: dial `address` (an IP), present `host` as authority / TLS name."""

    host: str
    port: int
    tls: bool
    address: str

    @property
    def dial(self) -> str:
        ip = ipaddress.ip_address(self.address)
        return f"ipv6:[{ip}]:{self.port}" if ip.version == 6 else f"ipv4:{ip}:{self.port}"


def parse_ports(spec: str) -> tuple[tuple[int, int], ...]:
    """'443,1024-65535' -> ((443, 443), (1024, 65535)); ValueError when malformed."""
    ranges = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        low, _, high = part.partition("-")
        lo, hi = int(low), int(high or low)
        if not 1 <= lo <= hi <= 65535:
            raise ValueError(f"bad port range {part!r}")
        ranges.append((lo, hi))
    return tuple(ranges)


def _is_internal(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _is_internal(ip.ipv4_mapped)
    return (
        ip.is_loopback
        or ip.is_link_local
        or ip.is_private
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED)
    )


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


class CallbackPolicy:
    """Immutable; `check` may be called concurrently from one event loop."""

    def __init__(
        self,
        allowed_hosts: Sequence[str] = (),
        ports: str = DEFAULT_PORTS,
        blocked_networks: Sequence[str] = (),
        resolver: Resolver = system_resolver,
    ) -> None:
        self._allowed_hosts = tuple(h.lower() for h in allowed_hosts)
        self._ports = parse_ports(ports)
        self._blocked = tuple(ipaddress.ip_network(n, strict=False) for n in blocked_networks)
        self._resolve = resolver

    def parse(self, target: str) -> tuple[str, int, bool]:
        """(host, port, tls) of a syntactically valid target with an allowed port."""
        match = _TARGET.fullmatch(target or "") if len(target or "") <= MAX_TARGET_LENGTH else None
        if match is None:
            raise InvalidArgument("callback_target must be host:port or https://host:port")
        host = match.group("host").strip("[]").lower()
        port = int(match.group("port"))
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not _HOST.fullmatch(host):
                raise InvalidArgument("callback_target has an invalid host name") from None
        if not 1 <= port <= 65535:
            raise InvalidArgument("callback_target port must be 1-65535")
        if not any(lo <= port <= hi for lo, hi in self._ports):
            raise PermissionDenied(f"callback port {port} is not allowed")
        return host, port, match.group("scheme") in ("https", "grpcs")

    def _host_allowed(self, host: str, patterns: Sequence[str]) -> bool:
        for pattern in patterns:
            if "/" in pattern:
                continue  # a CIDR entry allows addresses, checked below
            if fnmatch.fnmatchcase(host, pattern):
                return True
        try:  # an IP literal target is allowed by a CIDR entry that contains it
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        return self._listed_network(ip, patterns)

    @staticmethod
    def _listed_network(ip: IPAddress, patterns: Sequence[str]) -> bool:
        for pattern in patterns:
            try:
                if ip in ipaddress.ip_network(pattern, strict=False):
                    return True
            except ValueError:
                continue  # a host-name pattern
        return False

    async def check(self, target: str, key_hosts: Sequence[str]) -> CallbackTarget:
        """The target pinned to a checked address; raises before any connection is made."""
        host, port, tls = self.parse(target)
        patterns = (*key_hosts, *self._allowed_hosts)
        if not patterns:
            raise PermissionDenied("callbacks are not enabled for this API key (no callback_hosts)")
        if not self._host_allowed(host, patterns):
            raise PermissionDenied("callback host is not in this API key's allow-list")
        return await self._pinned(host, port, tls, patterns)

    async def check_url(self, url: str, key_hosts: Sequence[str] = ()) -> tuple[CallbackTarget, str]:
        """An HTTP(S) webhook URL checked like a callback target: (pinned target, path with query)."""
        parts = urlsplit(url or "") if len(url or "") <= MAX_TARGET_LENGTH else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
            raise InvalidArgument("webhook URL must be http(s)://host[:port]/path")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise InvalidArgument("webhook URL port must be 1-65535") from None
        host = parts.hostname.lower()
        bracketed = f"[{host}]" if ":" in host else host
        self.parse(f"{parts.scheme}://{bracketed}:{port}")  # same syntax and port rules
        patterns = (*key_hosts, *self._allowed_hosts)
        if not patterns:
            raise PermissionDenied("no webhook hosts are allowed")
        if not self._host_allowed(host, patterns):
            raise PermissionDenied("webhook host is not in the allow-list")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return await self._pinned(host, port, parts.scheme == "https", patterns), path

    async def _pinned(self, host: str, port: int, tls: bool, patterns: Sequence[str]) -> CallbackTarget:
        """Resolve once; refuse internal addresses not listed as IP/CIDR; pin the first address."""
        try:
            addresses = await self._resolve(host, port)
        except (OSError, UnicodeError):
            raise InvalidArgument("callback host does not resolve") from None
        if not addresses:
            raise InvalidArgument("callback host does not resolve")
        for text in addresses:
            ip = ipaddress.ip_address(text.split("%", 1)[0])
            internal = _is_internal(ip) or any(ip in net for net in self._blocked)
            if internal and not self._listed_network(ip, patterns):
                raise PermissionDenied("callback host resolves to an internal address")
        return CallbackTarget(host=host, port=port, tls=tls, address=addresses[0].split("%", 1)[0])
