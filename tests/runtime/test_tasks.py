"""Stopping a background task whose loop survives the error a cancellation became."""

from __future__ import annotations

import asyncio

import pytest

from service.runtime.tasks import stop


async def test_stop_ends_a_loop_that_turned_its_cancellation_into_an_error() -> None:
    swallowed: list[str] = []

    async def loop() -> None:
        while True:
            try:
                await asyncio.sleep(30)  # a client call a cancellation lands in
            except asyncio.CancelledError:
                if not swallowed:
                    swallowed.append("once")
                    continue  # as a library raising ConnectionError would make the loop do
                raise

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await stop(task)
    assert task.cancelled() and swallowed == ["once"]


async def test_stop_raises_the_tasks_own_error() -> None:
    async def failing() -> None:
        raise ValueError("broken")

    task = asyncio.create_task(failing())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="broken"):
        await stop(task)
