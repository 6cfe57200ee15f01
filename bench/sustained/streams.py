"""The soak's event-stream readers, open the whole time.

- one all-requests stream (``GET /v1/queue/events``), reconnecting with ``Last-Event-ID`` if
  it is cut off; it tallies every terminal event (count and id fingerprints) so the run can
  check that it saw each request finish exactly once;
- a few per-request lanes: each submits a ``sleep`` request (progress events along the way),
  reads its stream to the end, and starts again.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import aiohttp

from sustained.load import MASK, fingerprint, id_in

TERMINAL = (b'"status":"succeeded"', b'"status":"failed"', b'"status":"canceled"')
SLEEP_BODY = b'{"seconds":0.5,"steps":5}'


@dataclass
class Tally:
    """What the readers received."""

    events: int = 0  # every event, all streams
    terminal: int = 0  # terminal status events on the all-requests stream
    terminal_idsum: int = 0
    resets: int = 0  # `reset` events: the server says events were missed
    reconnects: int = 0
    lane_submits: int = 0  # the lanes' own requests (accepted)
    lane_done: int = 0  # ... whose stream has ended
    lane_idsum: int = 0
    lane_failures: int = 0  # a lane's submit refused or its stream ended without success


class Readers:
    """The streams, as tasks owned here: started, then stopped and awaited."""

    def __init__(self, base: str, lanes: int) -> None:
        self.base = base
        self.lanes = lanes
        self.tally = Tally()
        self.last_id = ""
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._stopping = False
        self._lanes_stopping = False
        self.opened = asyncio.Event()

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        self._session = aiohttp.ClientSession(timeout=timeout)
        self._tasks.append(asyncio.create_task(self._all_requests()))
        await asyncio.wait_for(self.opened.wait(), 10)
        self._tasks += [asyncio.create_task(self._lane()) for _ in range(self.lanes)]

    async def stop_lanes(self, timeout: float = 30.0) -> None:
        """Let each lane end its round, then stop it (the all-requests stream keeps reading):
        a request a lane submitted is never left uncounted."""
        self._lanes_stopping = True
        lanes = self._tasks[1:]
        if lanes:
            await asyncio.wait(lanes, timeout=timeout)
        await _stop(lanes)
        del self._tasks[1:]

    async def stop(self) -> None:
        self._stopping = True
        await _stop(self._tasks)
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()

    def _blocks(self, blocks: list[bytes], follow: bool) -> None:
        t = self.tally
        for block in blocks:
            if not block.startswith(b"event: ") and b"\nevent: " not in block:
                continue  # a keep-alive comment, a retry line
            t.events += 1
            if not follow:
                continue
            at = block.rfind(b"id: ")
            if at >= 0:
                self.last_id = block[at + 4 : block.find(b"\n", at)].decode()
            if block.startswith(b"event: reset") or b"\nevent: reset" in block:
                t.resets += 1
            elif b"event: status" in block and any(m in block for m in TERMINAL):
                t.terminal += 1
                t.terminal_idsum = (t.terminal_idsum + fingerprint(id_in(block))) & MASK

    async def _read(self, resp: aiohttp.ClientResponse, follow: bool) -> None:
        tail = b""
        async for chunk in resp.content.iter_any():
            data = (tail + chunk).replace(b"\r\n", b"\n")
            blocks = data.split(b"\n\n")
            tail = blocks.pop()
            self._blocks(blocks, follow)
        self._blocks([tail.strip()], follow)

    async def _all_requests(self) -> None:
        assert self._session is not None
        while not self._stopping:
            headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
            try:
                async with self._session.get(
                    f"{self.base}/v1/queue/events", headers=headers
                ) as resp:
                    resp.raise_for_status()
                    self.opened.set()
                    await self._read(resp, follow=True)
            except (TimeoutError, aiohttp.ClientError):
                pass
            self.tally.reconnects += 1
            await asyncio.sleep(0.2)

    async def _lane(self) -> None:
        assert self._session is not None
        t = self.tally
        headers = {"Content-Type": "application/json", "Prefer": "respond-async"}
        while not self._stopping and not self._lanes_stopping:
            try:
                async with self._session.post(
                    f"{self.base}/v1/sleep", data=SLEEP_BODY, headers=headers
                ) as resp:
                    body = await resp.read()
                if resp.status != 202:
                    t.lane_failures += 1
                    await asyncio.sleep(0.5)
                    continue
                rid = id_in(body)
                t.lane_submits += 1
                t.lane_idsum = (t.lane_idsum + fingerprint(rid)) & MASK
                url = f"{self.base}/v1/queue/requests/{rid.decode()}/events"
                async with self._session.get(url) as resp:
                    text = (await resp.read()).replace(b"\r\n", b"\n")
                blocks = [b for b in text.split(b"\n\n") if b.strip()]
                self._blocks(blocks, follow=False)
                t.lane_done += 1
                if not blocks or b'"status":"succeeded"' not in blocks[-1]:
                    t.lane_failures += 1
            except (TimeoutError, aiohttp.ClientError):
                t.lane_failures += 1
                await asyncio.sleep(0.5)


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t
