"""Run a service's composition root until SIGTERM/SIGINT, then shut it down gracefully."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Protocol


class App(Protocol):
    """What a service's `app.py` exposes to the runner."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


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
