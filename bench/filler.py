"""Fill the echo queue fast with real submits.

The real ``Queue.submit`` builds every call of the real submit script (keys and arguments);
instead of sending each one through redis-py, the calls are encoded here and sent ``BATCH``
per pipeline over a raw socket (redis-py's command packing alone would cost ~100 µs/call).
Each reply is checked to be ``created``.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Coroutine, Sequence
from typing import Any
from urllib.parse import urlparse

import hiredis
import redis

from service import scripts
from service.auth import ANONYMOUS
from service.ids import new_request_id
from service.queue import Limits, Queue

BATCH = 1000
LIMITS = Limits(attempts=1, timeout=10.0, result_ttl=3600, max_queue_depth=10**8, retry_backoff=1)


class CapturingQueue(Queue):
    """``Queue`` whose script calls are recorded instead of sent."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client)  # type: ignore[arg-type]
        self.calls: list[tuple[Sequence[str], Sequence[Any]]] = []

    async def _run(self, name: str, keys_: Sequence[str], args: Sequence[Any]) -> Any:
        if name != "submit":
            raise RuntimeError(f"unexpected script {name}")
        self.calls.append((keys_, args))
        return [b"created", b"", b"", 0, 0, 0]


def run_now(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends (``Queue.submit`` with a recording ``_run``)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("Queue.submit suspended; the filler cannot drive it synchronously")


def encode(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, float):
        return repr(value).encode()
    return str(value).encode()


def resp(parts: Sequence[Any]) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        b = encode(p)
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def fill_queue(url: str, count: int, time_limit: float) -> tuple[int, str]:
    """Submit ``count`` requests (or as many as fit in ``time_limit`` s); (done, last id)."""
    client = redis.Redis.from_url(url)
    sha = client.script_load(scripts.source("submit"))
    queue = CapturingQueue(client)
    u = urlparse(url)
    deadline = time.monotonic() + time_limit
    done = 0
    last = ""
    with socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379)) as sock:
        reader = hiredis.Reader()
        in_flight = 0  # replies still to read: Redis runs one batch while we build the next

        def read_replies(n: int) -> None:
            got = 0
            while got < n:
                reader.feed(sock.recv(1 << 20))
                while (reply := reader.gets()) is not False:
                    if not (isinstance(reply, list) and reply and reply[0] == b"created"):
                        raise RuntimeError(f"submit failed: {reply!r}")
                    got += 1

        while done < count and time.monotonic() < deadline:
            size = min(BATCH, count - done)
            for i in range(size):
                last = new_request_id("echo", queue.now_ms())
                body = f'{{"hello":"world","n":{done + i}}}'
                run_now(queue.submit("echo", last, ANONYMOUS, body, LIMITS))
            payload = b"".join(resp(["EVALSHA", sha, len(k), *k, *a]) for k, a in queue.calls)
            queue.calls.clear()
            read_replies(in_flight)
            sock.sendall(payload)
            in_flight = size
            done += size
        read_replies(in_flight)
    client.close()
    return done, last
