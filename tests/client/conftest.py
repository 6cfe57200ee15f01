"""The real service for the client's tests: the app in a thread of its own, on a free loopback
port, so the synchronous client can block while the service runs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import web

from service.app import create_app
from service.runtime.embedded import free_port
from service.state import Roles
from tests.http.test_api import make_settings


class ThreadedService:
    """``create_app`` served by an ``AppRunner`` on an event loop in a background thread."""

    def __init__(self, redis_url: str, roles: Roles, overrides: dict[str, Any]) -> None:
        overrides.setdefault("server", {}).setdefault("shutdown_grace_seconds", 1)
        self.settings = make_settings(redis_url, **overrides)
        self.roles = roles
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(20)

    async def _start(self) -> None:
        app = create_app(self.settings, self.roles)
        self.runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def stop(self) -> None:
        try:
            if self.runner is not None:
                asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(20)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(20)
            self.loop.close()


Serve = Callable[..., ThreadedService]


@pytest.fixture
def serve(redis_url: str) -> Iterator[Serve]:
    """Start the service (API and worker unless told otherwise); stopped after the test."""
    started: list[ThreadedService] = []

    def start(
        *, worker: bool = True, dispatcher: bool = False, **overrides: Any
    ) -> ThreadedService:
        service = ThreadedService(
            redis_url, Roles(api=True, worker=worker, dispatcher=dispatcher), overrides
        )
        started.append(service)
        service.start()
        return service

    yield start
    for service in reversed(started):
        service.stop()
