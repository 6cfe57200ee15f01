"""The loop watchdog names the task that blocked the loop, not one that merely ran often."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from service.worker.watchdog import LoopWatchdog


async def test_the_blocking_task_is_named_not_a_busy_one(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="service.worker.watchdog")
    # The app's settings in tests: a 0.2 s threshold and the default 0.25 s look interval.
    # Looking less often than the threshold made a loop that was only busy (a claim task
    # running short steps back to back, as under load) look blocked, named the claim task
    # and then stayed silent through the real block that followed.
    watchdog = LoopWatchdog(0.2, interval=0.25)
    watchdog.start()
    stop = asyncio.Event()

    async def busy() -> None:
        while not stop.is_set():
            time.sleep(0.03)  # noqa: ASYNC251 (short steps: busy, never blocked)
            await asyncio.sleep(0)

    async def blocking() -> None:
        time.sleep(0.8)  # noqa: ASYNC251 (the bug being detected)

    claim = asyncio.create_task(busy(), name="claim:echo")
    try:
        await asyncio.sleep(1.0)  # the busy task alone: no stall to report
        await asyncio.create_task(blocking(), name="handler:block-loop/req_1")
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await claim
        watchdog.stop()
    blocked = [r.getMessage() for r in caplog.records if "event loop blocked" in r.getMessage()]
    assert any("block-loop/req_1" in m for m in blocked), blocked
    assert not any("claim:echo" in m for m in blocked), blocked


async def test_one_report_per_stall(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="service.worker.watchdog")
    watchdog = LoopWatchdog(0.1)
    watchdog.start()

    async def blocking() -> None:
        time.sleep(0.5)  # noqa: ASYNC251

    try:
        for n in (1, 2):
            await asyncio.create_task(blocking(), name=f"handler:block-loop/req_{n}")
            await asyncio.sleep(0.2)  # the loop beats again between the two stalls
    finally:
        watchdog.stop()
    blocked = [r.getMessage() for r in caplog.records if "event loop blocked" in r.getMessage()]
    assert sum("req_1" in m for m in blocked) == 1, blocked
    assert sum("req_2" in m for m in blocked) == 1, blocked
