"""The one module that touches redis-py's internals: the client, and raw connections under it.

The paths from submit to result (auto-pipelining, a worker's blocking pop, the event
subscription) talk to a connection directly instead of through redis-py's commands, pipelines
and PubSub, whose bookkeeping cost more than the work itself (the callers say how much). What
they need below redis-py's public API is here and nowhere else, so an upgrade is checked in one
place: ``tests/runtime/test_redis_internals.py`` fails, naming the internal, if any of it moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Coroutine
from typing import Any

import hiredis
from redis._parsers.hiredis import NOT_ENOUGH_DATA, _AsyncHiredisParser
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

SOCKET_TIMEOUT = 10.0
# Bytes asked of the stream per read (redis-py's own socket_read_size).
READ_SIZE = 65536

# A client of one server, or of a Redis/Valkey Cluster (``redis.cluster: true``).
Client = Redis | RedisCluster


def connect(url: str, max_connections: int = 100, *, cluster: bool = False) -> Client:
    """A redis-py asyncio client with the timeouts every role uses.

    With ``cluster``, ``url`` names one or more nodes, comma-separated (the first one's
    credentials and TLS settings apply to all): a :class:`RedisCluster`, which finds the other
    nodes and the slot map itself (``max_connections`` is then per node).
    """
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
    if cluster:
        urls = [u.strip() for u in url.split(",") if u.strip()]
        nodes = [ClusterNode(h, p) for h, p in (_host_port(u) for u in urls)]
        del options["health_check_interval"], options["retry_on_error"]
        # ConnectionError, TimeoutError and CLUSTERDOWN are retried (slot map refreshed in
        # between) a few times, then raised: an outage, 503 at the HTTP layer.
        return RedisCluster.from_url(urls[0], startup_nodes=nodes, **options)
    return Redis.from_url(url, **options)  # type: ignore[arg-type]


def _host_port(url: str) -> tuple[str, int]:
    rest = url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
    host, _, port = rest.rpartition(":")
    return (host or rest).strip("[]"), int(port or 6379)


def is_cluster(redis: Client) -> bool:
    """Whether the client talks to a Redis/Valkey Cluster."""
    return isinstance(redis, RedisCluster)


def node_name(redis: RedisCluster, key: str) -> str:
    """The name (``host:port``) of the master owning ``key``'s slot, as the client knows it
    (once initialized: ``await redis.initialize()``)."""
    node = redis.get_node_from_key(key)
    assert node is not None  # a master, not a replica: never None
    return str(node.name)


async def borrow_at(redis: RedisCluster, name: str) -> RawConnection:
    """A connection of the pool of the cluster node ``host:port``, held until
    :func:`give_back_at` (closed with the client in any case)."""
    node = redis.get_node(node_name=name)
    if node is None:  # an ASK to a node the slot map does not know yet
        await stale(redis)
        node = redis.get_node(node_name=name)
        if node is None:
            raise ConnectionError(f"no cluster node {name}")
    return RawConnection(node.acquire_connection())


def give_back_at(redis: RedisCluster, name: str, conn: RawConnection) -> None:
    """Return a connection of :func:`borrow_at` to its node's pool."""
    node = redis.get_node(node_name=name)
    if node is not None:
        conn._conn.socket_timeout = node.connection_kwargs.get("socket_timeout")
        node.release(conn._conn)  # type: ignore[arg-type]


async def refresh_slots(redis: RedisCluster) -> None:
    """Read the slot map again (after MOVED, a failover, a node gone); concurrent calls share
    one refresh."""
    await redis.nodes_manager.initialize()


async def stale(redis: Client) -> None:
    """A connection to a node failed or was refused (MOVED): on a cluster, read the slot map
    again so the next connection goes to the right node (best effort; no-op on one server)."""
    if isinstance(redis, RedisCluster):
        with contextlib.suppress(Exception):
            await redis.nodes_manager.initialize()


async def dedicated_for(redis: Client, key: str) -> RawConnection:
    """:func:`dedicated`, on a cluster to the master owning ``key`` (not yet open)."""
    if not isinstance(redis, RedisCluster):
        return dedicated(redis)
    await redis.initialize()
    node = redis.get_node_from_key(key)
    assert node is not None
    conn: AbstractConnection = node.connection_class(**node.connection_kwargs)
    return RawConnection(conn)


class RawConnection:
    """One connection used below redis-py's command layer, with no socket timeout.

    A socket timeout would make redis-py wrap every write in a task (``wait_for``) and every
    read in a timeout context: the callers keep one asyncio deadline around each exchange
    instead. The methods hand back redis-py's own coroutines (no wrapper of their own), as
    they run once per call on the hot paths.
    """

    __slots__ = ("_conn", "_hiredis")

    def __init__(self, conn: AbstractConnection) -> None:
        conn.socket_timeout = None
        self._conn = conn
        # hiredis's parser: replies are read from it directly (see ``read``).
        self._hiredis = type(getattr(conn, "_parser", None)) is _AsyncHiredisParser

    async def connect(self) -> None:
        """Connect now (otherwise the first send does)."""
        await self._conn.connect()  # type: ignore[no-untyped-call]

    def send_packed(self, data: bytes) -> Coroutine[Any, Any, None]:
        """Write commands already encoded as RESP, with no health check first."""
        return self._conn.send_packed_command(data, check_health=False)

    def send(self, *args: Any) -> Coroutine[Any, Any, None]:
        """Encode and write one command."""
        return self._conn.send_command(*args)

    def write_now(self, data: bytes) -> bool:
        """Hand commands encoded as RESP to the open socket without awaiting anything (the
        transport writes what it can at once): False, and nothing written, when the connection
        is not open. The reply's reader then awaits :meth:`drained` first."""
        writer = self._conn._writer
        if self._conn._reader is None or writer is None or writer.transport.is_closing():
            return False
        writer.write(data)
        return True

    async def drained(self) -> None:
        """Wait while the socket's send buffer is over its limit (after :meth:`write_now`)."""
        writer = self._conn._writer
        if writer is None:
            raise ConnectionError("the connection closed")
        try:
            await writer.drain()
        except OSError as exc:
            await self._conn.disconnect(nowait=True)
            raise ConnectionError(f"error while writing to the server: {exc.args}") from None

    def read(self, push: bool = False) -> Coroutine[Any, Any, Any]:
        """The next reply, however long it takes; an error reply raises ``ResponseError``.

        ``push``: also return pushed messages (pub/sub) rather than hand them elsewhere.
        """
        if self._hiredis and getattr(self._conn._parser, "_connected", False):
            return self._read(push)
        reply: Coroutine[Any, Any, Any] = self._conn.read_response(
            timeout=math.inf, push_request=push
        )
        return reply

    async def _read(self, push: bool) -> Any:
        # redis-py's read_response with hiredis, less what these connections never use (its
        # timeouts, health-check times, protocol checks, push handlers and the error text
        # formatted for every read): one reply from hiredis's reader, fed from the stream.
        conn = self._conn
        parser: Any = conn._parser
        reader = parser._reader
        try:
            reply = reader.gets()
            while reply is NOT_ENOUGH_DATA or (
                not push and isinstance(reply, hiredis.PushNotification)
            ):
                if reply is NOT_ENOUGH_DATA:
                    data = await parser._stream.read(READ_SIZE)
                    if not data:
                        raise ConnectionError("the server closed the connection")
                    reader.feed(data)
                reply = reader.gets()
        except OSError as exc:
            await conn.disconnect(nowait=True)
            raise ConnectionError(f"error while reading from the server: {exc.args}") from None
        except BaseException:
            # As redis-py: a reply half read leaves the connection unusable.
            await conn.disconnect(nowait=True)
            raise
        if isinstance(reply, (ResponseError, ConnectionError)):
            raise reply
        if isinstance(reply, list) and reply and isinstance(reply[0], ConnectionError):
            raise reply[0]
        return reply

    def close(self) -> Coroutine[Any, Any, None]:
        """Close the socket (a later send reconnects)."""
        return self._conn.disconnect()

    async def deliver(self, on_reply: Callable[[Any], None]) -> None:
        """Call ``on_reply`` with each reply as it arrives (pub/sub pushes), until the
        connection fails (``ConnectionError``) or ``on_reply`` raises (that error).

        For a connection that only receives once subscribed: the replies are parsed and handed
        on from the transport's own data callback, not by a reading task woken for each
        (``read``: a stream reader's wake-up, redis-py's response chain and a loop step more
        per message). Without hiredis's reader (or an open socket) it loops on ``read``.
        """
        conn = self._conn
        reader = getattr(getattr(conn, "_parser", None), "_reader", None)
        stream = getattr(conn, "_reader", None)
        transport = getattr(getattr(conn, "_writer", None), "transport", None)
        if not isinstance(reader, hiredis.Reader) or stream is None or transport is None:
            while True:
                on_reply(await self.read(push=True))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        pushes = _Pushes(reader, transport.get_protocol(), on_reply, done, transport)
        transport.set_protocol(pushes)
        # What the stream reader holds already (read with the subscription's confirmations).
        buffered = bytes(stream._buffer)
        stream._buffer.clear()
        if buffered or reader.has_data():
            pushes.data_received(buffered)
        if stream.at_eof() and not done.done():
            done.set_exception(ConnectionError("the subscription's connection closed"))
        if getattr(stream, "_paused", False):
            transport.resume_reading()
        await done


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


def pool_size(redis: Client) -> int:
    """How many connections the client's pool may hold at once (on a cluster: per node)."""
    if isinstance(redis, RedisCluster):
        return int(redis.get_connection_kwargs().get("max_connections") or 100)
    size: int = redis.connection_pool.max_connections
    return size


def decodes_responses(redis: Client) -> bool:
    """Whether the client decodes replies to ``str``."""
    if isinstance(redis, RedisCluster):
        return bool(redis.get_connection_kwargs().get("decode_responses"))
    return bool(redis.connection_pool.connection_kwargs.get("decode_responses"))


def sharing_pool(redis: Redis) -> Redis:
    """A second client on the same connections, whose response callbacks can be changed
    (one server only: a cluster's nodes each have their own pool)."""
    return Redis(connection_pool=redis.connection_pool)


class _Pushes(asyncio.Protocol):
    """The protocol of a subscribed connection (see :meth:`RawConnection.deliver`): feeds
    hiredis's reader and hands on each reply; the connection's end still reaches the stream
    protocol it replaced (so redis-py's close completes)."""

    def __init__(
        self,
        reader: hiredis.Reader,
        previous: asyncio.BaseProtocol,
        on_reply: Callable[[Any], None],
        done: asyncio.Future[None],
        transport: asyncio.BaseTransport,
    ) -> None:
        self._reader = reader
        self._previous = previous
        self._on_reply = on_reply
        self._done = done
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        reader, on_reply = self._reader, self._on_reply
        if data:
            reader.feed(data)
        try:
            while (reply := reader.gets()) is not NOT_ENOUGH_DATA:
                if isinstance(reply, ConnectionError):
                    raise reply
                on_reply(reply)
        except Exception as exc:
            self._fail(exc)
            self._transport.close()

    def eof_received(self) -> bool | None:
        # The server closed its side: the stream reader is told, and the transport closes
        # (a stream protocol would keep it half-open for a reader that sees the EOF itself).
        self._previous.eof_received()  # type: ignore[attr-defined]
        self._fail(ConnectionError("the subscription's connection was closed by the server"))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"the subscription's connection closed: {exc}"))
        self._previous.connection_lost(exc)

    def _fail(self, exc: Exception) -> None:
        if not self._done.done():
            self._done.set_exception(exc)

    def pause_writing(self) -> None:
        self._previous.pause_writing()

    def resume_writing(self) -> None:
        self._previous.resume_writing()
