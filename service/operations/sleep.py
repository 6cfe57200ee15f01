"""The sleep operation: waits, reporting progress; a demo of long-running, cancellable work."""

from __future__ import annotations

import asyncio
from typing import Any, Final, NotRequired, TypedDict

from service.handlers import Context, operation

DEFAULT_STEPS: Final = 10


class SleepInput(TypedDict):
    """The operation's input."""

    seconds: float
    steps: NotRequired[int]


class SleepResult(TypedDict):
    """The operation's result."""

    slept: float


INPUT_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "seconds": {"type": "number", "minimum": 0, "maximum": 3600, "examples": [5]},
        "steps": {
            "type": "integer",
            "minimum": 1,
            "maximum": 100,
            "default": DEFAULT_STEPS,
            "description": "How many progress reports to make along the way.",
        },
    },
    "required": ["seconds"],
    "additionalProperties": False,
}

OUTPUT_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {"slept": {"type": "number"}},
    "required": ["slept"],
    "additionalProperties": False,
}


@operation(
    input_schema=INPUT_SCHEMA,
    output_schema=OUTPUT_SCHEMA,
    summary="Wait for a number of seconds, reporting progress.",
    description=(
        "Sleeps for `seconds` in `steps` equal slices and reports progress after each one. "
        "Cancelling the request stops it promptly."
    ),
)
async def sleep(ctx: Context, data: SleepInput) -> SleepResult:
    """Sleep for the requested time in slices, reporting progress after each."""
    seconds = data["seconds"]
    # JSON Schema's "integer" admits 86.0, which arrives as a float.
    steps = int(data.get("steps", DEFAULT_STEPS))
    loop = asyncio.get_running_loop()
    start = loop.time()
    for step in range(1, steps + 1):
        # Sleep until each slice's deadline rather than for a fixed slice, so time spent
        # publishing progress does not add up over the steps.
        target = seconds * step / steps
        await asyncio.sleep(max(0.0, start + target - loop.time()))
        await ctx.progress(100 * step / steps, f"slept {target:.1f} of {seconds:.1f} s")
    return {"slept": seconds}
