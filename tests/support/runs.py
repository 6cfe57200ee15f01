"""Waiting on a request run by an in-process worker."""

from __future__ import annotations

import asyncio

from service.queue.store import Queue, Snapshot


async def finished(queue: Queue, op: str, rid: str, seconds: float = 10) -> Snapshot:
    """The request's snapshot (with its result) once it is neither queued nor running."""
    async with asyncio.timeout(seconds):
        while (snap := await queue.read(op, rid, with_result=True)) is None or snap.record[
            "status"
        ] in {"queued", "running"}:
            await asyncio.sleep(0.005)
    return snap
