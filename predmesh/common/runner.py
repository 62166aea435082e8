"""Run a service's composition root until SIGTERM/SIGINT, then shut it down gracefully."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

log = logging.getLogger(__name__)


class App(Protocol):
    """What a service's `app.py` exposes to the runner."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def configure_logging(level: str) -> None:
    """Root logging at `level`, with credentials in URLs redacted from every line."""
    from predmesh.common import redact

    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    redact.install()


async def serve_until_signal(app: App) -> None:
    """Start `app`, wait for SIGTERM or SIGINT, then `stop()` it (health first, then drain)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await app.start()
    try:
        await stop.wait()
    finally:
        await app.stop()


def run_loop(main: Coroutine[Any, Any, Any], use_uvloop: bool = True) -> Any:
    """Run `main` to completion on a new event loop (a service's `main()` calls this, not
    `asyncio.run`): uvloop's when `use_uvloop` and uvloop is installed, asyncio's otherwise.
    Measured with our grpcio: ~10% less CPU per RPC (docs/BENCHMARKS.md)."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            log.info("uvloop not installed; running on asyncio's event loop")
        else:
            factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
