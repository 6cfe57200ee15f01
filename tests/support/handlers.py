"""Handlers used only by the tests: failures of every kind."""

from __future__ import annotations

import asyncio
from typing import Any

from service.handlers import Context, RejectedInput, Retryable, operation


@operation(input_schema={"type": "object"}, summary="Always raises an unexpected error")
async def boom(ctx: Context, data: Any) -> Any:
    raise RuntimeError("secret internal detail /etc/passwd")


@operation(input_schema={"type": "object"}, summary="Rejects its input")
async def reject(ctx: Context, data: Any) -> Any:
    raise RejectedInput("the input is unacceptable", [{"path": "/x", "message": "bad"}])


@operation(input_schema={"type": "object"}, summary="Fails transiently on the first attempts")
async def flaky(ctx: Context, data: Any) -> Any:
    if ctx.attempt < int(data.get("succeed_on", 2)):
        raise Retryable("try again", defer=0.05)
    return {"attempt": ctx.attempt}


@operation(input_schema={"type": "object"}, summary="Hangs until cancelled")
async def hang(ctx: Context, data: Any) -> Any:
    await ctx.progress(1, "hanging")
    await asyncio.sleep(3600)


def blocking(ctx: Context, data: Any) -> Any:
    """A plain def: runs in a thread and reports progress from there."""
    ctx.progress_threadsafe(50, "half way")
    return {"thread": True, "echo": data}


def not_json(ctx: Context, data: Any) -> Any:
    """Returns something JSON cannot encode."""
    return {1, 2, 3}


async def too_deep(ctx: Context, data: Any) -> Any:
    """Returns arrays nested deeper than the JSON encoder can go (RecursionError)."""
    result: list[Any] = []
    for _ in range(100_000):
        result = [result]
    return result


@operation(input_schema={"type": "object"}, summary="Blocks the event loop (a bug)")
async def block_loop(ctx: Context, data: Any) -> Any:
    import time

    time.sleep(float(data.get("seconds", 0.6)))  # noqa: ASYNC251 (the bug under test)
    return {"blocked": True}


def in_process(ctx: Any, data: Any) -> Any:
    """Runs in a pool process: CPU work, with progress sent back."""
    import os

    ctx.progress_threadsafe(50, "half way")
    return {"pid": os.getpid(), "sum": sum(range(int(data.get("n", 1000))))}
