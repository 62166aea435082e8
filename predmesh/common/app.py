"""One skeleton for every service's composition root: start, stop, cleanup after a failed start, signals.

A service app subclasses `ServiceApp` and implements `open(stack)`: it opens its resources
in order and registers each one's closer on `stack` (a `contextlib.AsyncExitStack`) right
after opening it, and serves last with `await self.serve(stack, server)`. Then:

- `await start()` runs `open`; when any step raises, everything already opened is closed
  in reverse order and the error propagates (a half-failed start leaks nothing);
- `await stop()` closes everything in reverse order: the gRPC server first (health
  NOT_SERVING, in-flight RPCs drained within `grace_s`), then what it used (batchers,
  producers, channels...). A closer that raises does not keep the others from running.
  Idempotent; `start()` again after `stop()` opens a fresh set of resources.
- `port`, `address`, `metrics_port` are the server's, valid while started.

`run_app(SettingsClass, AppClass)` is every service's `main()`: settings from the
environment, logging, the event loop (`runner.run_loop`, uvloop when enabled), the app
built inside that loop (grpc.aio binds to it), SIGTERM/SIGINT -> `stop()`.

Lifecycle methods are called from one event loop; nothing here is thread-safe.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Generic, TypeVar

from predmesh.common.grpcserver import GrpcServer
from predmesh.common.runner import configure_logging, run_loop, serve_until_signal
from predmesh.common.settings import ServerSettings

log = logging.getLogger(__name__)

S = TypeVar("S", bound=ServerSettings)


class ServiceApp(Generic[S]):
    """Base of a service composition root; see the module docstring."""

    name = "service"

    def __init__(self, settings: S) -> None:
        self.settings = settings
        self.server: GrpcServer | None = None
        self._stack: AsyncExitStack | None = None

    async def open(self, stack: AsyncExitStack) -> None:
        """Open the resources in order, registering each closer on `stack`; serve last."""
        raise NotImplementedError

    async def serve(self, stack: AsyncExitStack, server: GrpcServer) -> GrpcServer:
        """Start `server` (the last step of `open`); it is the first thing `stop()` closes."""
        stack.push_async_callback(self._forget_server)
        stack.push_async_callback(server.stop)  # also safe when start() below fails half-way
        self.server = server
        await server.start()
        return server

    async def _forget_server(self) -> None:
        self.server = None

    @property
    def started(self) -> bool:
        return self._stack is not None

    async def start(self) -> None:
        if self._stack is not None:
            raise RuntimeError(f"{self.name} is already started")
        stack = AsyncExitStack()
        try:
            await self.open(stack)
        except BaseException:
            log.error("%s failed to start; closing what it opened", self.name)
            with contextlib.suppress(Exception):
                await stack.aclose()
            raise
        self._stack = stack

    async def stop(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
            log.info("%s stopped", self.name)

    # -- the server's addresses ---------------------------------------------------------
    def _server(self) -> GrpcServer:
        if self.server is None:
            raise RuntimeError(f"{self.name} is not started")
        return self.server

    @property
    def port(self) -> int:
        return self._server().port

    @property
    def address(self) -> str:
        return self._server().address

    @property
    def metrics_port(self) -> int:
        """Bound port of /metrics (0 when `metrics_port` is unset or the app is not started)."""
        return self.server.metrics_port if self.server is not None else 0


def run_app(settings_cls: Callable[[], S], app_cls: Callable[[S], ServiceApp[S]]) -> None:
    """A service's `main()`: settings from the environment, logging, loop, app until SIGTERM/SIGINT."""
    settings = settings_cls()
    configure_logging(settings.log_level)

    async def serve() -> None:
        await serve_until_signal(app_cls(settings))  # built inside the loop its gRPC server uses

    run_loop(serve(), settings.uvloop)
