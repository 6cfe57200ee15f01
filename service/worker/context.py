"""The ``ctx`` a handler receives: which request it runs, and progress reporting."""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from service.queue.store import Job, Queue

log = logging.getLogger(__name__)


class JobContext:
    """The ``ctx`` a handler receives."""

    def __init__(self, queue: Queue, job: Job, loop: asyncio.AbstractEventLoop) -> None:
        self._queue = queue
        self._job = job
        self._loop = loop

    @property
    def request_id(self) -> str:
        """The request being processed."""
        return self._job.request_id

    @property
    def operation(self) -> str:
        """The operation's name."""
        return self._job.op

    @property
    def attempt(self) -> int:
        """1 on the first run, then 2, 3 … on retries."""
        return self._job.attempt

    async def progress(self, percent: float, message: str | None = None) -> None:
        """Record and publish progress (best effort: an outage never fails the handler)."""
        percent = max(0.0, min(100.0, float(percent)))
        try:
            await self._queue.progress(self._job, percent, message)
        except RedisError as exc:
            log.debug("progress of %s not recorded: %s", self._job.request_id, exc)

    def progress_threadsafe(self, percent: float, message: str | None = None) -> None:
        """Report progress from a thread; waits until it is recorded."""
        fut = asyncio.run_coroutine_threadsafe(self.progress(percent, message), self._loop)
        fut.result(timeout=30)
