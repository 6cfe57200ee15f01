"""Which worker and dispatcher processes are alive, and what they run: for the console.

Each process writes its own JSON entry into one hash (:func:`keys.processes`) every few
seconds, off the request path; readers drop entries silent for an hour. One key, one field per
process: a single-key write, no script needed.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from service.queue import keys
from service.runtime.redis import Client

INTERVAL = 5.0  # seconds between a process's announcements
FORGET_MS = 3_600_000  # an entry silent this long is removed when read


async def announce(redis: Client, process_id: str, info: dict[str, Any]) -> None:
    """Record the process's current state, stamped with the time (``heartbeat``, unix ms)."""
    entry = dict(info, id=process_id, heartbeat=int(time.time() * 1000))
    await redis.hset(keys.processes(), process_id, orjson.dumps(entry))


async def withdraw(redis: Client, process_id: str) -> None:
    """Remove the process's entry (it is stopping)."""
    await redis.hdel(keys.processes(), process_id)


async def processes(redis: Client, now_ms: int) -> list[dict[str, Any]]:
    """Every process's last announcement, with ``alive`` (heard within 3 intervals)."""
    raw: dict[Any, Any] = await redis.hgetall(keys.processes())
    out, stale = [], []
    for pid, value in raw.items():
        entry = orjson.loads(value)
        age = now_ms - int(entry.get("heartbeat", 0))
        if age > FORGET_MS:
            stale.append(pid)
            continue
        entry["alive"] = age <= INTERVAL * 3000
        out.append(entry)
    if stale:
        await redis.hdel(keys.processes(), *stale)
    out.sort(key=lambda e: (e.get("kind", ""), e.get("host", ""), e.get("pid", 0)))
    return out
