"""A mutual-TLS grpc.aio channel whose client certificate follows its files (rotation without restart).

grpc.aio fixes a channel's credentials when it is created, and grpcio's Python API has no
certificate provider for channels, so `ReloadingChannel` holds one inner secure channel and
replaces it when the certificate, key or CA files change: a `FileWatcher` (the one mechanism
for watching files, predmesh.common.filewatch) hashes them every `poll_s` and, on new content
that parses as a key pair, opens a new inner channel with the new credentials. New calls go to
the new channel at once; the old one is closed after `close_grace_s`, so calls already on it
finish. A renewed certificate (cert-manager) or a new mesh CA is therefore presented without
restarting the service. An unreadable or half-written set keeps the current channel.

Stubs made from this channel stay valid across swaps: its multi-callables look the current
inner channel up on every call (one attribute read when nothing changed).

Lifecycle: create it with a running event loop (it starts its watcher task there), use it as a
grpc.aio.Channel, `await close()`. Without a running loop it does not watch (logged). All
methods run on the loop that created it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import grpc

from predmesh.common.filewatch import FileWatcher
from predmesh.common.tls import TlsFiles

log = logging.getLogger(__name__)

Credentials = tuple[bytes, bytes, bytes]  # certificate chain, key, CA


def check_credentials(contents: list[bytes]) -> Credentials:
    """The PEM triple after checking that it parses and that the key matches the certificate (blocking)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert, key, ca = contents
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    leaf = x509.load_pem_x509_certificate(cert)
    private = serialization.load_pem_private_key(key, password=None)
    x509.load_pem_x509_certificates(ca)
    if leaf.public_key().public_bytes(*spki) != private.public_key().public_bytes(*spki):
        raise ValueError("the private key does not belong to the certificate")
    return cert, key, ca


class _MultiCallable:
    """Resolves (kind, method) on the owner's current inner channel, re-resolving after a swap."""

    __slots__ = ("_args", "_generation", "_inner", "_kind", "_owner")

    def __init__(self, owner: ReloadingChannel, kind: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._owner = owner
        self._kind = kind
        self._args = (args, kwargs)
        self._generation = -1
        self._inner: Any = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        owner = self._owner
        if self._generation != owner.generation:
            margs, mkwargs = self._args
            self._inner = getattr(owner.current, self._kind)(*margs, **mkwargs)
            self._generation = owner.generation
        return self._inner(*args, **kwargs)


class ReloadingChannel(grpc.aio.Channel):
    """mTLS channel to one target; re-created with new credentials when `files` change."""

    def __init__(
        self,
        files: TlsFiles,
        make: Callable[[grpc.ChannelCredentials], grpc.aio.Channel],
        poll_s: float = 5.0,
        close_grace_s: float = 30.0,
        name: str = "channel",
    ) -> None:
        self._files = files
        self._make = make
        self._close_grace_s = close_grace_s
        self._name = name
        self._creds = check_credentials(list(files.read()))
        self.current: grpc.aio.Channel = make(self._credentials(self._creds))
        self.generation = 0
        self._retired: dict[grpc.aio.Channel, asyncio.Task[None]] = {}
        self._watcher: FileWatcher[Credentials] = FileWatcher(
            [files.cert, files.key, files.ca],
            check_credentials,
            self._swap,
            poll_s,
            name=f"client certificate {files.cert}",
        )
        self._watch_task: asyncio.Task[None] | None = None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            log.warning("%s created outside an event loop: its client certificate is not re-read", name)
        else:
            self._watch_task = loop.create_task(self._start_watching())

    async def _start_watching(self) -> None:
        try:
            await self._watcher.start()
        except Exception:  # unreadable now: keep the credentials the channel was opened with
            log.exception("%s: cannot watch its client certificate; it will not be re-read", self._name)

    @staticmethod
    def _credentials(creds: Credentials) -> grpc.ChannelCredentials:
        cert, key, ca = creds
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)

    def _swap(self, creds: Credentials) -> None:
        if creds == self._creds:
            return  # the watcher's first load, or a rewrite of the same files
        old = self.current
        self._creds = creds
        self.current = self._make(self._credentials(creds))
        self.generation += 1
        task = asyncio.get_running_loop().create_task(old.close(self._close_grace_s))
        self._retired[old] = task
        task.add_done_callback(lambda _: self._retired.pop(old, None))
        log.info("%s: client certificate %s changed; new calls use the new one", self._name, self._files.cert)

    async def check_now(self) -> bool:
        """Re-read the files now (tests, SIGHUP-style triggers); True when the channel was replaced."""
        generation = self.generation
        await self._watcher.check_now()
        return self.generation != generation

    # -- grpc.aio.Channel ------------------------------------------------------------
    def unary_unary(self, *args: Any, **kwargs: Any) -> Any:
        return _MultiCallable(self, "unary_unary", args, kwargs)

    def unary_stream(self, *args: Any, **kwargs: Any) -> Any:
        return _MultiCallable(self, "unary_stream", args, kwargs)

    def stream_unary(self, *args: Any, **kwargs: Any) -> Any:
        return _MultiCallable(self, "stream_unary", args, kwargs)

    def stream_stream(self, *args: Any, **kwargs: Any) -> Any:
        return _MultiCallable(self, "stream_stream", args, kwargs)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self.current.get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self.current.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self.current.channel_ready()

    async def close(self, grace: float | None = None) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
            self._watch_task = None
        await self._watcher.stop()
        await self.current.close(grace)
        for old, task in list(self._retired.items()):  # replaced channels still in their grace period
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await old.close(grace)

    async def __aenter__(self) -> ReloadingChannel:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()
