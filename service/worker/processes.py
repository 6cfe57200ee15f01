"""CPU-heavy handlers in a process pool, with progress carried back to the worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import queue as queue_mod
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessContext:
    """The ``ctx`` of a handler running in a pool process (it must pickle)."""

    request_id: str
    operation: str
    attempt: int
    _progress: Any  # a multiprocessing queue proxy

    async def progress(self, percent: float, message: str | None = None) -> None:
        """Report progress (from an ``async def`` called inside the process)."""
        self.progress_threadsafe(percent, message)

    def progress_threadsafe(self, percent: float, message: str | None = None) -> None:
        """Report progress; delivered by the worker, best effort."""
        with contextlib.suppress(Exception):
            self._progress.put_nowait((self.request_id, float(percent), message))


class ProcessRunner:
    """A spawn-started process pool and the thread relaying its progress reports."""

    def __init__(self, workers: int | None = None) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self._manager: Any = None
        self._pool: ProcessPoolExecutor | None = None
        self._workers = workers or os.cpu_count() or 1
        self._relay: threading.Thread | None = None
        self._stop = threading.Event()
        self._markers: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = {}

    def context(self, request_id: str, operation: str, attempt: int) -> ProcessContext:
        """A context for one run."""
        self._ensure()
        return ProcessContext(request_id, operation, attempt, self._progress)

    def _ensure(self) -> None:
        if self._pool is None:
            self._manager = self._ctx.Manager()
            self._progress = self._manager.Queue()
            self._pool = ProcessPoolExecutor(self._workers, mp_context=self._ctx)

    async def run(self, fn: Callable[..., Any], ctx: ProcessContext, data: Any) -> Any:
        """Run ``fn(ctx, data)`` in the pool; returns once its progress reports are relayed."""
        self._ensure()
        assert self._pool is not None
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._pool, fn, ctx, data)
        # The handler's reports were queued before it returned: a marker queued now comes
        # after them, so once the relay reaches it, every report has been delivered.
        flushed: asyncio.Future[None] = loop.create_future()
        self._markers[ctx.request_id] = (loop, flushed)
        self._progress.put((ctx.request_id, -1.0, None))
        try:
            await asyncio.wait_for(flushed, timeout=5)
        except TimeoutError:
            log.warning("progress of %s not relayed in time", ctx.request_id)
        finally:
            self._markers.pop(ctx.request_id, None)
        return result

    def start_relay(self, deliver: Callable[[str, float, str | None], Any]) -> None:
        """Relay progress reports to ``deliver`` (called on the relay thread).

        ``deliver`` may return a concurrent future: the relay waits for it, so reports are
        stored in order and before the run is reported done.
        """
        self._ensure()

        def relay() -> None:
            while not self._stop.is_set():
                try:
                    rid, percent, message = self._progress.get(timeout=0.2)
                except queue_mod.Empty:
                    continue
                except (EOFError, OSError):
                    return
                if percent < 0:
                    marker = self._markers.get(rid)
                    if marker is not None:
                        loop, flushed = marker
                        loop.call_soon_threadsafe(_resolve, flushed)
                    continue
                delivered = deliver(rid, percent, message)
                if delivered is not None:
                    with contextlib.suppress(Exception):
                        delivered.result(timeout=5)

        self._relay = threading.Thread(target=relay, name="acceptd-progress", daemon=True)
        self._relay.start()

    def shutdown(self) -> None:
        """Stop the pool, the relay and the manager."""
        self._stop.set()
        if self._relay is not None:
            self._relay.join(timeout=2)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._manager is not None:
            self._manager.shutdown()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
