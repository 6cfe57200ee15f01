"""Handlers used only by the tests: failures of every kind."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import os
import time
import uuid
from typing import Any

from service.handlers import Context, RejectedInput, Retryable, operation
from service.operations import sleep as sleep_operation


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


async def lone_surrogate(ctx: Context, data: Any) -> Any:
    """Returns a string no UTF-8 can carry (a lone surrogate, e.g. from a bad decode)."""
    return {"text": "broken \ud800 text"}


@operation(input_schema={"type": "object"}, summary="Blocks the event loop (a bug)")
async def block_loop(ctx: Context, data: Any) -> Any:
    import time

    time.sleep(float(data.get("seconds", 0.6)))  # noqa: ASYNC251 (the bug under test)
    return {"blocked": True}


def in_process(ctx: Any, data: Any) -> Any:
    """Runs in a pool process: CPU work, with progress sent back."""
    ctx.progress_threadsafe(50, "half way")
    return {"pid": os.getpid(), "sum": sum(range(int(data.get("n", 1000))))}


# The ids of the requests ``recorded`` ran, in this process (tests run workers in-process).
RAN: list[str] = []


@operation(input_schema={"type": "object"}, summary="Records the requests it runs, then sleeps")
async def recorded(ctx: Context, data: Any) -> Any:
    RAN.append(ctx.request_id)
    await asyncio.sleep(float(data.get("seconds", 0)))
    return {"ran": ctx.request_id}


# Where ``counted_sleep`` appends one line per run; set in the worker's environment by a test.
RUNS_LOG_ENV = "TEST_HANDLER_RUNS_LOG"


@operation(
    input_schema=sleep_operation.INPUT_SCHEMA,
    output_schema=sleep_operation.OUTPUT_SCHEMA,
    summary="The shipped sleep, recording each run",
)
async def counted_sleep(ctx: Context, data: Any) -> Any:
    """The shipped ``sleep`` handler, after appending ``<id> <attempt> <pid>`` to the runs log.

    One ``write`` of a short line to a file opened with ``O_APPEND`` is atomic across processes,
    so every worker can share the log; a run cut short by a crash is recorded all the same.
    """
    line = f"{ctx.request_id} {ctx.attempt} {os.getpid()}\n".encode()
    fd = os.open(os.environ[RUNS_LOG_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return await sleep_operation.sleep(ctx, data)


FAIL_ONCE: set[str] = set()  # inputs' "key"s whose next run fails (then removed)


@operation(input_schema={"type": "object"}, summary="Fails while its key is in FAIL_ONCE")
async def fails_once(ctx: Context, data: Any) -> Any:
    key = str(data.get("key"))
    if key in FAIL_ONCE:
        FAIL_ONCE.discard(key)
        raise RuntimeError("failing once, as the test asked")
    return {"key": key, "attempt": ctx.attempt}


class _Level(enum.IntEnum):
    HIGH = 3


class _Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class _Point:
    x: int


# What ``returns`` gives back for each input: values at the edges of JSON encoding.
RETURNED: dict[str, Any] = {
    "nan": {"v": float("nan"), "inf": float("-inf")},
    "int_keys": {1: "a", 2.5: "b", False: "c", None: "d"},
    "big": {"n": 2**70, "m": -(2**64)},
    "int_enum": [_Level.HIGH],
    "uuid_enum": [uuid.UUID(int=5), _Colour.RED],
    "dataclass": _Point(1),
    "text": {"s": "h\u00e9llo \u2603", "float": 1e16},
}


async def returns(ctx: Context, data: Any) -> Any:
    """Returns RETURNED[data["kind"]]."""
    return RETURNED[data["kind"]]


def sleep_in_thread(ctx: Context, data: Any) -> Any:
    """A plain def (run in a thread) that sleeps data["seconds"]."""
    time.sleep(data["seconds"])
    return {"slept": data["seconds"]}
