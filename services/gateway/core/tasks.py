"""Background tasks the gateway core owns: one way to drain them at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Set


async def drain_tasks(tasks: Set[asyncio.Task[None]], timeout_s: float) -> None:
    """Wait for `tasks` up to `timeout_s`, then cancel what is left and wait for it to end."""
    if not tasks:
        return
    _, pending = await asyncio.wait(set(tasks), timeout=timeout_s)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
