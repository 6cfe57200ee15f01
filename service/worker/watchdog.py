"""A watchdog thread that names the handler blocking the event loop."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

log = logging.getLogger(__name__)


class LoopWatchdog:
    """Logs when the event loop has not run for ``threshold`` seconds, and which task holds it.

    Handlers that block (CPU work or blocking I/O in an ``async def``) stall every other
    request, lease renewal and stream of the process; this finds them.

    The loop beats every ``interval`` (at most a quarter of the threshold, so a loop that is
    merely busy never looks stalled), and the thread looks as often. A stall is blamed on a
    task only once that same task was running at every look since the loop last beat, for at
    least the threshold: a task that happened to run at the moment of one look (a claim, under
    load) is never named, and one report is made per stall, not per outage of the beat.
    """

    def __init__(self, threshold: float = 1.0, interval: float = 0.25) -> None:
        self.threshold = threshold
        self.interval = min(interval, threshold / 4)
        self._beat = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Start beating on the running loop and watching from a thread."""
        self._loop = asyncio.get_running_loop()
        self._beat = time.monotonic()
        self._tick()
        self._thread = threading.Thread(target=self._watch, name="acceptd-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread."""
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _tick(self) -> None:
        self._beat = time.monotonic()
        assert self._loop is not None
        self._handle = self._loop.call_later(self.interval, self._tick)

    def _watch(self) -> None:
        holder: asyncio.Task[object] | None = None
        beat = self._beat
        since = time.monotonic()  # the first look that saw ``holder`` running since ``beat``
        reported = False
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            task = asyncio.current_task(self._loop) if self._loop else None
            if self._beat != beat or task is not holder:
                # The loop moved on (it beat, or another step runs): a new observation.
                beat, holder, since, reported = self._beat, task, now, False
                continue
            if reported or holder is None:
                continue
            # The same step of one task ran at every look from ``since`` to now, and the loop
            # has not beaten meanwhile: that task holds the loop.
            if now - since < self.threshold:
                continue
            reported = True
            _report(holder.get_name(), now - beat)


def _report(name: str, stalled: float) -> None:
    if name.startswith("handler:"):
        log.warning(
            "event loop blocked for %.1f s by the handler of request %s: "
            "use a plain def (runs in a thread) or await instead of blocking",
            stalled,
            name.split(":", 1)[1],
        )
    else:
        log.warning("event loop blocked for %.1f s in task %s", stalled, name)
