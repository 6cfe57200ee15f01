"""Shared webhook test helpers: a scripted receiver on loopback, requests finished for real."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook

from service.queue.ids import new_request_id
from service.queue.store import Limits, NewRequest, Queue
from service.runtime.redis import Client

HANG = -1  # a scripted "status" that makes the receiver hang instead of answering
LIMITS = Limits(attempts=3, timeout=10, result_ttl=60, max_queue_depth=100, retry_backoff=1.0)


@dataclass(frozen=True)
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def webhook_id(self) -> str:
        """The ``webhook-id`` header."""
        return self.headers["webhook-id"]

    def verify(self, secret: str) -> Any:
        """The parsed body, after verifying the signature the way a receiver would."""
        return Webhook(secret).verify(self.body, self.headers)


class Receiver:
    """An aiohttp server on 127.0.0.1 recording requests and answering from a script."""

    def __init__(self, port: int = 0, hang_seconds: float = 10.0) -> None:
        self.port = port
        self.hang_seconds = hang_seconds
        self.received: list[Received] = []
        self.script: deque[tuple[int, dict[str, str]]] = deque()
        self.default: tuple[int, dict[str, str]] = (200, {})
        self.hanging = 0
        self.release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The base URL."""
        return f"http://127.0.0.1:{self.port}"

    def reply(self, status: int, headers: dict[str, str] | None = None) -> None:
        """Answer one upcoming request with ``status`` (``HANG`` to hang)."""
        self.script.append((status, headers or {}))

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(Received(request.path, dict(request.headers), body, time.monotonic()))
        status, headers = self.script.popleft() if self.script else self.default
        if status == HANG:
            self.hanging += 1
            try:
                async with asyncio.timeout(self.hang_seconds):
                    await self.release.wait()
            except TimeoutError:
                pass
            finally:
                self.hanging -= 1
            status = 200
        return web.Response(status=status, headers=headers, text="ok" if status < 300 else "no")

    async def start(self) -> None:
        """Listen (on ``port``, or a free one)."""
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        if self.port == 0:
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        """Release hanging requests and stop listening."""
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Receiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0, interval: float = 0.02
) -> None:
    """Poll ``condition`` (sync or async) until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if not isinstance(value, bool):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


async def finish_request(
    redis: Client,
    client: str = "anon",
    *,
    op: str = "echo",
    result: str = '{"x": 1}',
    callback_url: str = "",
    callback_events: str = "",
) -> str:
    """Submit, claim and succeed one request the way the core does; its id."""
    q = Queue(redis)
    rid = new_request_id(op, q.now_ms())
    await q.submit(
        NewRequest(
            op,
            rid,
            client,
            '{"x": 1}',
            LIMITS,
            callback_url=callback_url,
            callback_events=callback_events,
        )
    )
    jobs, _ = await q.claim(op, "w1", "token-" + rid, 10, lease=30, worker_ttl=10)
    (job,) = [j for j in jobs if j.request_id == rid]
    assert await q.finish(job, "succeeded", result) == "succeeded"
    return rid
