"""Fixtures of the webhook tests: dispatchers run in the background, a loopback receiver."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from service.http.monitor import render
from service.runtime.config import WebhookSettings
from tests.support.webhooks import Receiver
from tests.webhooks.test_dispatch import OPS, StartDispatcher, settings
from webhooks import Dispatcher


@pytest.fixture
async def start(redis_client: Redis) -> AsyncIterator[StartDispatcher]:
    """Start dispatchers running in the background; all are stopped at the end."""
    tasks: list[asyncio.Task[None]] = []

    def run(conf: WebhookSettings | None = None, **kwargs: Any) -> Dispatcher:
        dispatcher = Dispatcher(redis_client, conf or settings(), OPS, render, **kwargs)
        tasks.append(asyncio.create_task(dispatcher.run()))
        return dispatcher

    yield run
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A receiver answering 200 unless scripted otherwise."""
    async with Receiver() as r:
        yield r
