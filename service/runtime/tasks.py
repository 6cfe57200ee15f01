"""Stopping a background task for certain."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

# How long a cancelled task may go on before it is cancelled again.
RECANCEL_SECONDS = 1.0


async def stop(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has ended; its own exception, if any, is raised.

    A client library may turn a cancellation that lands mid-call into an error (redis-py
    does, as a connection error), and a loop that survives errors then runs on: one
    ``cancel()`` and an ``await`` would wait forever. So the task is cancelled again every
    ``RECANCEL_SECONDS`` while it lives.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=RECANCEL_SECONDS)
    with contextlib.suppress(asyncio.CancelledError):
        await task
