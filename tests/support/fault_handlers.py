"""Handlers for the fault tests, loaded by ``acceptd`` processes through ``ACCEPTD_OPERATIONS__*``.

- ``crash`` kills its whole process the way a segfault or an OOM kill would (no cleanup, no
  ``finally``, no lease hand-back);
- ``nap`` sleeps without reporting progress, so it never touches Redis while it runs.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from service.handlers import Context, operation


@operation(input_schema={"type": "object"}, summary="Crash the worker process.")
async def crash(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    """Exit the process at once, like a crash: the request's lease is left behind."""
    os._exit(1)


@operation(
    input_schema={
        "type": "object",
        "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": 30}},
        "required": ["seconds"],
        "additionalProperties": False,
    },
    summary="Sleep without reporting progress.",
)
async def nap(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    """Sleep ``seconds``; no Redis calls while it runs."""
    await asyncio.sleep(float(data["seconds"]))
    return {"slept": data["seconds"]}
