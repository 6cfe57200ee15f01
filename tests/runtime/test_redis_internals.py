"""The redis-py internals ``service.runtime.redis`` relies on, and its primitives on a real server.

A redis-py upgrade that moves one of them fails here, naming it, rather than somewhere on the
path from submit to result.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import hiredis
import pytest
import redis.asyncio as aredis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from service.runtime.redis import (
    SOCKET_TIMEOUT,
    borrow,
    connect,
    decodes_responses,
    dedicated,
    give_back,
    sharing_pool,
)

# (owner, method, parameters it is called with) for everything called below the public API.
METHODS = [
    (AbstractConnection, "connect", ()),
    (AbstractConnection, "disconnect", ()),
    (AbstractConnection, "send_command", ()),
    (AbstractConnection, "send_packed_command", ("check_health",)),
    (AbstractConnection, "read_response", ("timeout", "push_request")),
    (ConnectionPool, "get_connection", ()),
    (ConnectionPool, "release", ()),
    (ConnectionPool, "make_connection", ()),
]


@pytest.mark.parametrize(
    ("owner", "name", "params"), METHODS, ids=[f"{o.__name__}.{n}" for o, n, _ in METHODS]
)
def test_methods_relied_on_are_there(owner: type, name: str, params: tuple[str, ...]) -> None:
    where = f"redis-py {owner.__module__}.{owner.__name__}.{name}"
    method = getattr(owner, name, None)
    assert callable(method), f"{where} is gone; service/runtime/redis.py calls it"
    signature = inspect.signature(method)
    for param in params:
        assert param in signature.parameters, (
            f"{where} lost its parameter {param!r}; service/runtime/redis.py passes it"
        )


def test_attributes_relied_on_are_there() -> None:
    client = aredis.Redis(socket_timeout=1.5)
    pool = client.connection_pool
    kwargs = getattr(pool, "connection_kwargs", None)
    assert isinstance(kwargs, dict), "redis-py ConnectionPool.connection_kwargs is gone"
    assert kwargs.get("socket_timeout") == 1.5, (
        "redis-py ConnectionPool.connection_kwargs no longer holds 'socket_timeout'"
    )
    decoding = aredis.Redis(decode_responses=True).connection_pool.connection_kwargs
    assert decoding.get("decode_responses") is True, (
        "redis-py ConnectionPool.connection_kwargs no longer holds 'decode_responses'"
    )
    conn = pool.make_connection()  # type: ignore[no-untyped-call]
    assert isinstance(conn, AbstractConnection), "redis-py make_connection() type changed"
    assert getattr(conn, "socket_timeout", None) == 1.5, (
        "redis-py AbstractConnection.socket_timeout is gone or no longer the pool's"
    )


def test_hiredis_pack_command_is_there() -> None:
    # The batcher encodes its pipelines with it.
    assert hiredis.pack_command(("PING",)) == b"*1\r\n$4\r\nPING\r\n", "hiredis.pack_command moved"


@pytest.fixture
async def quick_timeout(redis_url: str) -> AsyncIterator[aredis.Redis]:
    """A client whose socket timeout is shorter than the blocking commands sent below."""
    client = aredis.Redis.from_url(redis_url, socket_timeout=0.2)
    yield client
    await client.aclose()


async def test_read_response_inf_means_no_timeout(quick_timeout: aredis.Redis) -> None:
    # RawConnection.read passes timeout=math.inf; redis-py's default (None) is the socket timeout.
    conn: AbstractConnection = quick_timeout.connection_pool.make_connection()  # type: ignore[no-untyped-call]
    try:
        async with asyncio.timeout(5):
            await conn.send_command("BLPOP", "empty", 0.5)
            started = time.monotonic()
            reply = await conn.read_response(timeout=math.inf)
        assert reply is None and time.monotonic() - started >= 0.4, (
            "redis-py AbstractConnection.read_response(timeout=math.inf) no longer waits "
            "past the socket timeout"
        )
    finally:
        await conn.disconnect()


async def test_connect_keeps_its_settings(redis_url: str) -> None:
    client = connect(redis_url)
    try:
        assert isinstance(client, aredis.Redis)
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == SOCKET_TIMEOUT
        assert kwargs["socket_connect_timeout"] == 5
        assert kwargs["health_check_interval"] == 30
        assert kwargs["socket_keepalive"] is True
        assert await client.ping()
    finally:
        await client.aclose()


async def test_borrowed_connection_pipelines_without_socket_timeout(
    quick_timeout: aredis.Redis,
) -> None:
    conn = await borrow(quick_timeout)
    assert conn._conn.socket_timeout is None, "the socket timeout was not cleared"
    commands: list[tuple[Any, ...]] = [
        ("SET", "k", "v"),
        ("BLPOP", "empty", 0.5),
        ("GET", "k"),
        ("LPUSH", "k", "x"),
    ]
    packed = b"".join(hiredis.pack_command(c) for c in commands)
    async with asyncio.timeout(5):
        await conn.send_packed(packed)
        started = time.monotonic()
        assert await conn.read() == b"OK"
        # The BLPOP outlives the pool's 0.2 s socket timeout: borrow() cleared it, and
        # read_response(timeout=math.inf) still means no timeout.
        assert await conn.read() is None, "read_response(timeout=math.inf) returned early"
        assert time.monotonic() - started >= 0.4, "the socket timeout still applies"
        assert await conn.read() == b"v"
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await conn.read()
        await conn.send_packed(hiredis.pack_command(("PING",)))
        assert await conn.read() == b"PONG"  # an error reply leaves the connection usable
    await give_back(quick_timeout, conn)
    assert conn._conn.socket_timeout == 0.2  # the pool's own timeout again
    assert await quick_timeout.get("k") == b"v"  # and the pool uses it as before


async def test_dedicated_blpop_keeps_the_callers_deadline(
    redis_client: aredis.Redis, quick_timeout: aredis.Redis
) -> None:
    conn = dedicated(quick_timeout)
    assert conn._conn.socket_timeout is None, "the socket timeout was not cleared"
    try:
        async with asyncio.timeout(5):
            await conn.send("BLPOP", "q", 0.5)
            # No socket timeout cuts the wait short (make_connection() kept the pool's 0.2 s).
            assert await conn.read() is None, "read_response(timeout=math.inf) returned early"
            await redis_client.rpush("q", "job")
            await conn.send("BLPOP", "q", 0.5)
            assert await conn.read() == [b"q", b"job"]
        await conn.send("BLPOP", "q", 30)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await conn.read()
        assert time.monotonic() - started < 10
    finally:
        await conn.close()
    assert quick_timeout.connection_pool.connection_kwargs["socket_timeout"] == 0.2


async def test_dedicated_subscription_reads_pushes(redis_client: aredis.Redis) -> None:
    conn = dedicated(redis_client)
    try:
        async with asyncio.timeout(5):
            await conn.connect()
            await conn.send("SUBSCRIBE", "ch1", "ch2")
            assert await conn.read(push=True) == [b"subscribe", b"ch1", 1]
            assert await conn.read(push=True) == [b"subscribe", b"ch2", 2]
            assert await redis_client.publish("ch2", "hello") == 1
            assert await conn.read(push=True) == [b"message", b"ch2", b"hello"]
    finally:
        await conn.close()


async def test_dispatcher_pool_checks(redis_url: str, redis_client: aredis.Redis) -> None:
    assert decodes_responses(redis_client) is False
    decoding = aredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert decodes_responses(decoding) is True
    finally:
        await decoding.aclose()
    reader = sharing_pool(redis_client)
    assert reader is not redis_client
    assert reader.connection_pool is redis_client.connection_pool
    reader.set_response_callback("GET", _changed)
    await redis_client.set("k", "v")
    assert await reader.get("k") == b"changed"
    assert await redis_client.get("k") == b"v"  # the original's callbacks are its own


def _changed(response: Any, **options: Any) -> Any:
    return b"changed"


async def test_write_now_writes_on_an_open_connection_only(redis_client: aredis.Redis) -> None:
    # The batcher writes a tick's pipeline from its flush callback on a connection it keeps:
    # redis-py's connection's stream reader and writer are what it writes to.
    conn = await borrow(redis_client)
    try:
        await conn.connect()
        assert conn.write_now(hiredis.pack_command(("PING",))), (
            "redis-py AbstractConnection._reader/_writer (the open connection's streams) moved"
        )
        async with asyncio.timeout(5):
            await conn.drained()
            assert await conn.read() in (b"PONG", "PONG")
        await conn.close()
        assert not conn.write_now(hiredis.pack_command(("PING",))), "a closed connection wrote"
    finally:
        await give_back(redis_client, conn)


def test_raw_connections_read_hiredis_directly() -> None:
    # RawConnection.read and .deliver use the hiredis parser's reader and stream themselves
    # (checked on a live connection below).
    conn = dedicated(aredis.Redis())
    assert conn._hiredis, "redis-py no longer uses _AsyncHiredisParser: RawConnection.read is slow"


async def test_deliver_hands_on_buffered_and_later_pushes(redis_client: aredis.Redis) -> None:
    conn = dedicated(redis_client)
    got: list[Any] = []
    three = asyncio.Event()

    def on_reply(reply: Any) -> None:
        got.append(reply)
        if len(got) == 3:
            three.set()

    try:
        async with asyncio.timeout(5):
            await conn.connect()
            parser: Any = conn._conn._parser
            assert isinstance(parser._reader, hiredis.Reader) and parser._connected, (
                "redis-py's _AsyncHiredisParser._reader/_connected moved"
            )
            assert parser._stream is conn._conn._reader, "_AsyncHiredisParser._stream moved"
            writer: Any = conn._conn._writer
            assert writer.transport is not None
            await conn.send("SUBSCRIBE", "ch")
            assert await conn.read(push=True) == [b"subscribe", b"ch", 1]
            # Two published before the hand-over: read (or buffered) already, handed on first.
            assert await redis_client.publish("ch", "one") == 1
            assert await redis_client.publish("ch", "two") == 1
            delivering = asyncio.create_task(conn.deliver(on_reply))
            assert await redis_client.publish("ch", "three") == 1
            await three.wait()
            assert [m[2] for m in got] == [b"one", b"two", b"three"]
            # The server drops the connection: deliver ends with ConnectionError.
            await redis_client.client_kill_filter(_type="pubsub")
            with pytest.raises(RedisConnectionError):
                await delivering
    finally:
        async with asyncio.timeout(5):
            await conn.close()  # the stream protocol it replaced still completes the close


async def test_deliver_ends_with_the_callbacks_error(redis_client: aredis.Redis) -> None:
    conn = dedicated(redis_client)

    def on_reply(reply: Any) -> None:
        raise ValueError(f"bad message {reply!r}")

    try:
        async with asyncio.timeout(5):
            await conn.connect()
            await conn.send("SUBSCRIBE", "ch")
            assert await conn.read(push=True) == [b"subscribe", b"ch", 1]
            delivering = asyncio.create_task(conn.deliver(on_reply))
            await redis_client.publish("ch", "boom")
            with pytest.raises(ValueError, match="boom"):
                await delivering
    finally:
        async with asyncio.timeout(5):
            await conn.close()
