"""The one module that touches redis-py's internals: the client, and raw connections under it.

The paths from submit to result (auto-pipelining, a worker's blocking pop, the event
subscription) talk to a connection directly instead of through redis-py's commands, pipelines
and PubSub, whose bookkeeping cost more than the work itself (the callers say how much). What
they need below redis-py's public API is here and nowhere else, so an upgrade is checked in one
place: ``tests/runtime/test_redis_internals.py`` fails, naming the internal, if any of it moves.
"""

from __future__ import annotations

import math
from collections.abc import Coroutine
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError, TimeoutError

SOCKET_TIMEOUT = 10.0


def connect(url: str, max_connections: int = 100) -> Redis:
    """A redis-py asyncio client with the timeouts every role uses."""
    options: dict[str, object] = {
        # redis-py 8 fails a call past this many (MaxConnectionsError) rather than waiting:
        # the batchers keep within their share of it (service.runtime.batcher).
        "max_connections": max_connections,
        "socket_connect_timeout": 5,
        # A Redis that stops answering fails calls (503) instead of hanging them; blocking
        # reads (BLPOP, XREADGROUP) always ask for less than this.
        "socket_timeout": SOCKET_TIMEOUT,
        "health_check_interval": 30,
        # Stale pooled connections after a server restart are retried, not failed.
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 3),
        "retry_on_error": [ConnectionError, TimeoutError],
    }
    if not url.startswith("unix:"):
        options["socket_keepalive"] = True
    return Redis.from_url(url, **options)  # type: ignore[arg-type]


class RawConnection:
    """One connection used below redis-py's command layer, with no socket timeout.

    A socket timeout would make redis-py wrap every write in a task (``wait_for``) and every
    read in a timeout context: the callers keep one asyncio deadline around each exchange
    instead. The methods hand back redis-py's own coroutines (no wrapper of their own), as
    they run once per call on the hot paths.
    """

    __slots__ = ("_conn",)

    def __init__(self, conn: AbstractConnection) -> None:
        conn.socket_timeout = None
        self._conn = conn

    async def connect(self) -> None:
        """Connect now (otherwise the first send does)."""
        await self._conn.connect()  # type: ignore[no-untyped-call]

    def send_packed(self, data: bytes) -> Coroutine[Any, Any, None]:
        """Write commands already encoded as RESP, with no health check first."""
        return self._conn.send_packed_command(data, check_health=False)

    def send(self, *args: Any) -> Coroutine[Any, Any, None]:
        """Encode and write one command."""
        return self._conn.send_command(*args)

    def read(self, push: bool = False) -> Coroutine[Any, Any, Any]:
        """The next reply, however long it takes; an error reply raises ``ResponseError``.

        ``push``: also return pushed messages (pub/sub) rather than hand them elsewhere.
        """
        reply: Coroutine[Any, Any, Any] = self._conn.read_response(
            timeout=math.inf, push_request=push
        )
        return reply

    def close(self) -> Coroutine[Any, Any, None]:
        """Close the socket (a later send reconnects)."""
        return self._conn.disconnect()


async def borrow(redis: Redis) -> RawConnection:
    """A connection of the client's pool, held until :func:`give_back`."""
    conn: AbstractConnection = await redis.connection_pool.get_connection()  # type: ignore[no-untyped-call]
    return RawConnection(conn)


async def give_back(redis: Redis, conn: RawConnection) -> None:
    """Return a borrowed connection to its pool, with the pool's socket timeout again."""
    pool = redis.connection_pool
    conn._conn.socket_timeout = pool.connection_kwargs.get("socket_timeout")
    await pool.release(conn._conn)


def dedicated(redis: Redis) -> RawConnection:
    """A connection of its own with the client's settings, outside the pool (not yet open)."""
    conn: AbstractConnection = redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
    return RawConnection(conn)


def pool_size(redis: Redis) -> int:
    """How many connections the client's pool may hold at once."""
    size: int = redis.connection_pool.max_connections
    return size


def decodes_responses(redis: Redis) -> bool:
    """Whether the client decodes replies to ``str``."""
    return bool(redis.connection_pool.connection_kwargs.get("decode_responses"))


def sharing_pool(redis: Redis) -> Redis:
    """A second client on the same connections, whose response callbacks can be changed."""
    return Redis(connection_pool=redis.connection_pool)
