"""The soak's submit load: an open-loop, paced HTTP/1.1 client on raw asyncio connections.

Requests are due on a fixed schedule (``rate`` per second) whatever the service answers, and
a request's latency runs from when it was *due*, not from when a connection was free to send
it: a slow service makes later requests wait, and that wait is counted (no coordinated
omission). The client is a bare protocol (keep-alive, Content-Length bodies, one request per
connection at a time) so it costs far less CPU per request than the API it loads.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

MASK = (1 << 64) - 1
BODY = b'{"hello":"world","n":1}'


def fingerprint(request_id: bytes) -> int:
    """A request id's 64-bit hash; sums of these compare two sets of ids in O(1) memory."""
    return int.from_bytes(hashlib.blake2b(request_id, digest_size=8).digest(), "big")


def content_length(head: bytes) -> int:
    """The Content-Length of a lower-cased HTTP head (without its blank line); 0 if none."""
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    end = head.find(b"\r\n", at + 2)
    return int(head[at + 17 : end if end >= 0 else len(head)])


def id_in(body: bytes) -> bytes:
    """The first ``"id"`` in a JSON body (a monitor's own id comes first)."""
    start = body.find(b'"id":"')
    if start < 0:
        return b""
    start += 6
    return body[start : body.find(b'"', start)]


@dataclass
class Window:
    """What was answered since the last sample."""

    accepted: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # seconds, due → answered


class _Conn(asyncio.Protocol):
    def __init__(self, load: PacedLoad) -> None:
        self.load = load
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport
        self.buf = b""
        self.due = 0.0
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            length = content_length(self.buf[:end].lower())
            total = end + 4 + length
            if len(self.buf) < total:
                return
            status, body = int(self.buf[9:12]), self.buf[end + 4 : total]
            self.buf = self.buf[total:]
            self.load.answered(self, status, body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.load.lost(self)


class PacedLoad:
    """``POST path`` from ``connections`` keep-alive connections, paced or closed-loop."""

    def __init__(self, port: int, path: str, connections: int) -> None:
        self.port = port
        self.connections = connections
        self.request = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\nPrefer: respond-async\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n"
        ).encode() + BODY
        self.loop = asyncio.get_running_loop()
        self.free: list[_Conn] = []
        self.waiting: deque[float] = deque()  # due times of requests no connection took yet
        self.window = Window()
        self.accepted = 0
        self.offered = 0
        self.failed = 0  # answers other than 202, and requests lost with a connection
        self.idsum = 0
        self.closed_loop = False
        self.closing = False
        self._idle = asyncio.Event()
        self._conns: set[_Conn] = set()
        self._reconnects: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        for _ in range(self.connections):
            await self._connect()

    async def _connect(self) -> None:
        _, conn = await self.loop.create_connection(lambda: _Conn(self), "127.0.0.1", self.port)
        self._conns.add(conn)
        self._release(conn)

    def close(self) -> None:
        self.closing = True
        for conn in list(self._conns):
            if conn.transport is not None:
                conn.transport.close()

    def take(self) -> Window:
        """The answers since the last call."""
        window, self.window = self.window, Window()
        return window

    def in_flight(self) -> int:
        return len(self.waiting) + sum(c.busy for c in self._conns)

    def _send(self, conn: _Conn, due: float) -> None:
        assert conn.transport is not None
        conn.due, conn.busy = due, True
        self._idle.clear()
        conn.transport.write(self.request)

    def _release(self, conn: _Conn) -> None:
        conn.busy = False
        if self.waiting:
            self._send(conn, self.waiting.popleft())
        elif self.closed_loop:
            self._send(conn, self.loop.time())
        else:
            self.free.append(conn)
            if len(self.free) == len(self._conns):
                self._idle.set()

    def offer(self, due: float) -> None:
        """A request due at ``due`` (loop time): sent now if a connection is free."""
        self.offered += 1
        if self.free:
            self._send(self.free.pop(), due)
        else:
            self._idle.clear()
            self.waiting.append(due)

    def answered(self, conn: _Conn, status: int, body: bytes) -> None:
        w = self.window
        w.latencies.append(self.loop.time() - conn.due)
        w.statuses[status] += 1
        if status == 202:
            w.accepted += 1
            self.accepted += 1
            self.idsum = (self.idsum + fingerprint(id_in(body))) & MASK
        else:
            self.failed += 1
        self._release(conn)

    def lost(self, conn: _Conn) -> None:
        """A connection closed (the server's keep-alive timeout, or an error): replaced."""
        self._conns.discard(conn)
        if conn in self.free:
            self.free.remove(conn)
        if conn.busy:  # its request has no answer: a failure
            self.failed += 1
            self.window.statuses[0] += 1
        if not self.closing:
            task = self.loop.create_task(self._connect())
            self._reconnects.add(task)
            task.add_done_callback(self._reconnects.discard)

    async def paced(self, rate: float, seconds: float) -> None:
        """Requests due every ``1/rate`` s for ``seconds``: a fixed arrival schedule."""
        start = self.loop.time()
        total = round(rate * seconds)
        i = 0
        while i < total:
            due = min(total, int((self.loop.time() - start) * rate) + 1)
            while i < due:
                self.offer(start + i / rate)
                i += 1
            # At least a millisecond: a busy schedule goes out in small bursts, each request
            # still timed from its own due time.
            await asyncio.sleep(max(0.001, start + i / rate - self.loop.time()))

    async def closed(self, seconds: float) -> None:
        """Every connection sends again as soon as it is answered, for ``seconds``."""
        self.closed_loop = True
        for conn in list(self.free):
            self.free.remove(conn)
            self._send(conn, self.loop.time())
        await asyncio.sleep(seconds)
        self.closed_loop = False

    async def settle(self, timeout: float) -> bool:
        """Wait until every request sent has its answer."""
        if not self.in_flight():
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True
