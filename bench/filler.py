"""Fill a queue (the echo operation's unless told) fast with real submits.

The real ``Queue.submit`` builds every call of the real submit script (keys and arguments);
instead of sending each one through redis-py, the calls are encoded here and sent ``BATCH``
per pipeline over a raw socket (redis-py's command packing alone would cost ~100 µs/call).
Each reply is checked to be a created request's (its rank).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Coroutine, Generator, Sequence
from typing import Any
from urllib.parse import urlparse

import hiredis
import redis

from service.http.auth import ANONYMOUS
from service.queue import scripts
from service.queue.ids import new_request_id
from service.queue.scripts import SubmitArgv, SubmitCallArgv, SubmitCallKeys, SubmitKeys
from service.queue.store import Limits, NewRequest, Queue

BATCH = 1000
LIMITS = Limits(attempts=1, timeout=10.0, result_ttl=3600, max_queue_depth=10**8, retry_backoff=1)


class Ready:
    """An awaitable that is done at once (no event loop needed)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, Any]:
        return self.value
        yield  # a generator: awaiting it returns at once


class CapturingQueue(Queue):
    """``Queue`` whose script calls are recorded instead of sent."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client)  # type: ignore[arg-type]
        self.calls: list[tuple[Sequence[Any], Sequence[Any]]] = []

    def _submit_call(
        self, fixed: tuple[SubmitKeys, SubmitArgv], keys: SubmitCallKeys, argv: SubmitCallArgv
    ) -> Awaitable[Any]:
        # One submit per call: the fixed KEYS, its KEYS, the fixed ARGV, its ARGV.
        self.calls.append(((*fixed[0], *keys), (*fixed[1], *argv)))
        return Ready(0)  # created, first in the queue


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


def fill_queue(url: str, count: int, time_limit: float, op: str = "echo") -> tuple[int, str]:
    """Submit ``count`` requests of ``op`` (or as many as fit in ``time_limit`` s); (done,
    last id)."""
    client = redis.Redis.from_url(url)
    sha = client.script_load(scripts.SUBMIT.source)
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
                    # One call carries one submit here: its reply lists one reply.
                    [own] = reply if isinstance(reply, list) and len(reply) == 1 else [None]
                    if not isinstance(own, int):  # created: its rank
                        raise RuntimeError(f"submit failed: {reply!r}")
                    got += 1

        while done < count and time.monotonic() < deadline:
            size = min(BATCH, count - done)
            for i in range(size):
                last = new_request_id(op, queue.now_ms())
                body = f'{{"hello":"world","n":{done + i}}}'
                run_now(queue.submit(NewRequest(op, last, ANONYMOUS, body, LIMITS)))
            # One submit call per request, as a quiet API process would send them.
            payload = b"".join(resp(["EVALSHA", sha, len(k), *k, *a]) for k, a in queue.calls)
            queue.calls.clear()
            read_replies(in_flight)
            sock.sendall(payload)
            in_flight = size
            done += size
        read_replies(in_flight)
    client.close()
    return done, last
