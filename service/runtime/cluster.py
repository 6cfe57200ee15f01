"""Redis/Valkey Cluster (``redis.cluster: true``): per-node auto-pipelining and sharded pub/sub.

:class:`ClusterBatcher` is the cluster's :class:`~service.runtime.batcher.Batcher`: a tick's calls
are grouped by the master owning their first key's slot (every script's keys share one hash
tag, so one slot), and each node gets one pipelined exchange, all nodes concurrently. Replies a
node refuses because the slot map moved on are retried per call: ``MOVED`` (the slot map is
read again), ``ASK`` (sent to the importing node after ``ASKING``), ``TRYAGAIN`` and
``CLUSTERDOWN`` (after a short backoff); ``NOSCRIPT`` loads the script on that node. What still
fails after a few tries is raised as a ``ConnectionError``: an outage (503 + ``Retry-After``).

On a cluster, scripts publish with ``SPUBLISH`` and count listeners with ``PUBSUB SHARDNUMSUB``
(:func:`sharded`): classic ``PUBLISH`` is broadcast to every node and ``NUMSUB`` sees only the
local node's subscribers. The batcher sends that variant of each script; one-node servers run
the scripts unchanged. :func:`subscribe` is the matching reader: ``SUBSCRIBE`` on one server,
``SSUBSCRIBE`` per node owning the channels on a cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from hiredis import pack_command
from redis.asyncio import RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ConnectionError,
    MasterDownError,
    MovedError,
    ResponseError,
    TryAgainError,
)

from service.runtime.batcher import (
    Batcher,
    NotReplicated,
    Script,
    _Call,
    _Merged,
    pack_call,
    read_reply,
)
from service.runtime.redis import (
    SOCKET_TIMEOUT,
    Client,
    RawConnection,
    borrow_at,
    dedicated,
    dedicated_for,
    give_back_at,
    is_cluster,
    node_name,
    refresh_slots,
)

READ_TIMEOUT = 10.0
# Rounds of retries for calls a node refused (MOVED, ASK, TRYAGAIN, CLUSTERDOWN) or could not
# answer (its connection failed), with these pauses: a failover takes seconds, so past them
# the call fails as an outage (503) rather than hold its caller.
BACKOFF = (0.0, 0.05, 0.2, 0.5)
_REDIRECTS = ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN")


def sharded(source: str) -> str:
    """A script's source with pub/sub made cluster-local: ``SPUBLISH``, ``SHARDNUMSUB``."""
    return source.replace("'PUBLISH'", "'SPUBLISH'").replace("'NUMSUB'", "'SHARDNUMSUB'")


def batcher_for(redis: Client) -> Batcher:
    """The auto-pipelining batcher for this client: per node on a cluster."""
    if isinstance(redis, RedisCluster):
        return ClusterBatcher(redis)
    return Batcher(redis)


class ClusterBatcher(Batcher):
    """A :class:`Batcher` whose pipelines go to the node owning each call's slot."""

    def __init__(self, redis: RedisCluster) -> None:
        super().__init__(redis)  # type: ignore[arg-type]  # the base's own sending is unused
        self.cluster = redis
        self._conns: dict[str, list[RawConnection]] = {}
        self._variants: dict[int, Script] = {}

    def _variant(self, script: Script) -> Script:
        found = self._variants.get(id(script))
        if found is None:
            found = self._variants[id(script)] = script.edited(sharded)
        return found

    async def _replies(self, batch: list[_Call], written: RawConnection | None = None) -> list[Any]:
        # ``written`` is always None here: this batcher keeps no idle connection of the base's.
        replies: list[Any] = [None] * len(batch)
        todo = list(range(len(batch)))
        asks: dict[int, str] = {}  # call -> the node an ASK sent it to
        for pause in BACKOFF:
            if pause:
                await asyncio.sleep(pause)  # backoff between retries, not a synchronisation
            await self.cluster.initialize()
            groups: dict[str, list[int]] = {}
            for i in todo:
                groups.setdefault(
                    asks.get(i) or node_name(self.cluster, _key(batch[i])), []
                ).append(i)
            results = await asyncio.gather(
                *(self._node_exchange(name, [batch[i] for i in idx], [i in asks for i in idx])
                  for name, idx in groups.items())
            )  # fmt: skip
            todo, moved = [], False
            for idx, got in zip(groups.values(), results, strict=True):
                for i, reply in zip(idx, got, strict=True):
                    replies[i] = reply
                    kind = _redirect(reply)
                    if kind is None:
                        asks.pop(i, None)
                        continue
                    todo.append(i)
                    if kind == "ASK":
                        asks[i] = _ask_target(reply)
                    else:
                        asks.pop(i, None)
                        moved = True
            if not todo:
                return replies
            if moved:
                with contextlib.suppress(Exception):
                    await refresh_slots(self.cluster)
        for i in todo:  # still refused or unreachable: an outage
            if not isinstance(replies[i], ConnectionError):
                replies[i] = ConnectionError(f"cluster unavailable: {replies[i]}")
        return replies

    async def _node_exchange(self, name: str, calls: list[_Call], asking: list[bool]) -> list[Any]:
        try:
            replies = await self._exchange_on(name, calls, asking)
        except UnicodeEncodeError:
            # Nothing was sent: a call UTF-8 cannot carry fails alone (the others of every
            # node go on; raising would make the base batcher resend the other nodes' calls).
            return await self._without_unencodable(name, calls, asking)
        except (ConnectionError, OSError, TimeoutError) as exc:
            error = exc if isinstance(exc, ConnectionError) else ConnectionError(str(exc))
            return [error] * len(calls)
        lost = self._unloaded(replies)
        if lost:
            # This node has not got these scripts (first use, restart, failover to a fresh
            # replica): load them and resend.
            try:
                again = await self._exchange_on(
                    name, [calls[i] for i in lost], [asking[i] for i in lost], load=True
                )
            except (ConnectionError, OSError, TimeoutError) as exc:
                again = [ConnectionError(str(exc))] * len(lost)
            for i, reply in zip(lost, again, strict=True):
                replies[i] = reply
        return replies

    async def _without_unencodable(
        self, name: str, calls: list[_Call], asking: list[bool]
    ) -> list[Any]:
        replies: list[Any] = [None] * len(calls)
        kept: list[int] = []
        for i, call in enumerate(calls):
            try:
                self._pack([call], [False])
            except UnicodeEncodeError as exc:
                replies[i] = exc
            else:
                kept.append(i)
        if kept:
            sent = await self._node_exchange(
                name, [calls[i] for i in kept], [asking[i] for i in kept]
            )
            for i, reply in zip(kept, sent, strict=True):
                replies[i] = reply
        return replies

    async def _exchange_on(
        self, name: str, calls: list[_Call], asking: list[bool], *, load: bool = False
    ) -> list[Any]:
        idle = self._conns.setdefault(name, [])
        conn = idle.pop() if idle else await borrow_at(self.cluster, name)
        # WAIT on this node, after the calls it runs (see Batcher.wait_replicas).
        wait = self._wait if self._wait is not None and self._wait.needed(calls) else None
        try:
            async with asyncio.timeout(READ_TIMEOUT + (wait.seconds if wait else 0.0)):
                if load:
                    for script in {id(c[0]): c[0] for c in calls if c[0] is not None}.values():
                        await self._load(conn, self._variant(script))
                data = self._pack(calls, asking)
                await conn.send_packed(data + wait.command if wait else data)
                replies: list[Any] = []
                for ask in asking:
                    if ask:
                        with contextlib.suppress(ResponseError):
                            await conn.read()  # ASKING's +OK
                    try:
                        replies.append(await conn.read())
                    except (ResponseError, ClusterDownError) as exc:
                        replies.append(exc)  # an error reply; the connection is fine
                if wait is not None:
                    wait.apply(calls, replies, await read_reply(conn))
        except BaseException:
            for gone in [conn, *self._conns.pop(name, [])]:
                with contextlib.suppress(Exception):
                    await gone.close()  # the node is gone or restarted: these went with it
                give_back_at(self.cluster, name, gone)
            raise
        idle.append(conn)
        return replies

    async def _load(self, conn: RawConnection, script: Script) -> None:
        # An error raises: the calls fail with it. A refused FUNCTION LOAD (an ACL, a managed
        # service's limits) first turns this batcher to EVALSHA, as a server without Functions.
        try:
            await conn.send(*script.load(self.functions))
            await conn.read()
        except ResponseError:
            if not self.functions:
                raise
            self.functions = False
            await conn.send(*script.load(False))
            await conn.read()

    def _pack(self, calls: list[_Call], asking: list[bool]) -> bytes:
        out: list[bytes] = []
        for (script, args, _), ask in zip(calls, asking, strict=True):
            if ask:
                out.append(pack_command(("ASKING",)))
            variant = self._variant(script) if script is not None else None
            out.append(pack_call(variant, args, self.functions))
        return b"".join(out)

    async def close(self) -> None:
        """Wait for pipelines in flight, then close the per-node connections."""
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        conns, self._conns = self._conns, {}
        for name, group in conns.items():
            for conn in group:
                give_back_at(self.cluster, name, conn)


def _key(call: _Call) -> str:
    """The key whose slot a call goes to: a script's first key, a command's first argument."""
    script, args, _ = call
    if isinstance(args, _Merged):
        first: Any = args.keys[0] if args.keys else ""
    elif script is not None:
        first = args[1] if int(args[0]) > 0 else ""
    else:
        first = args[1] if len(args) > 1 else ""
    return first.decode() if isinstance(first, bytes) else str(first)


def _redirect(reply: Any) -> str | None:
    """Which retryable cluster refusal a reply is (None: an answer, or a final error).

    redis-py's cluster parser turns these error replies into their own classes (dropping the
    leading word); a plain parser leaves the word in the message.
    """
    if isinstance(reply, NotReplicated):
        return None  # the script ran: its caller decides (the client retries with its key)
    if isinstance(reply, ConnectionError):
        return "CONNECTION"
    for cls, name in _REFUSALS:
        if isinstance(reply, cls):
            return name
    if isinstance(reply, ResponseError):
        head = str(reply).split(" ", 1)[0]
        if head in _REDIRECTS:
            return head
    return None


def _ask_target(reply: Any) -> str:
    """The ``host:port`` an ASK reply names (``[ASK] <slot> <host:port>``)."""
    return str(reply).split()[-1]


_REFUSALS: tuple[tuple[type[Exception], str], ...] = (
    (MovedError, "MOVED"),  # before AskError: a subclass of it
    (AskError, "ASK"),
    (TryAgainError, "TRYAGAIN"),
    (ClusterDownError, "CLUSTERDOWN"),
    (MasterDownError, "MASTERDOWN"),
)


# Sharded pub/sub


async def subscribe(
    redis: Client,
    channels: Sequence[str | bytes],
    on_message: Callable[[bytes, bytes], None],
    on_live: Callable[[], None],
) -> None:
    """Subscribe to ``channels`` and call ``on_message(channel, data)`` for each message.

    On one server: ``SUBSCRIBE`` on one connection of its own. On a cluster: ``SSUBSCRIBE`` on
    one connection per master owning some of the channels, read concurrently. ``on_live`` is
    called once every subscription is confirmed. Runs until cancelled or until a connection
    fails, or (cluster) a node says it no longer serves a channel's slot (``sunsubscribe``):
    then it raises, and the caller subscribes again (on a cluster, after reading the slot
    map again: :func:`resubscribe_pause`).
    """
    conns: list[tuple[RawConnection, list[str | bytes]]] = []
    sharded_mode = is_cluster(redis)
    kind = b"smessage" if sharded_mode else b"message"
    try:
        async with asyncio.timeout(SOCKET_TIMEOUT):
            # The raw connections have no socket timeout: this deadline bounds the setup.
            await _open(redis, channels, conns)
        on_live()
        if len(conns) == 1:
            await _read(conns[0][0], kind, on_message)
            return
        readers = [asyncio.create_task(_read(conn, kind, on_message)) for conn, _ in conns]
        try:
            done, _ = await asyncio.wait(readers, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises the reader's error
        finally:
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    finally:
        for conn, _ in conns:
            with contextlib.suppress(Exception):
                await conn.close()


async def _open(
    redis: Client,
    channels: Sequence[str | bytes],
    conns: list[tuple[RawConnection, list[str | bytes]]],
) -> None:
    """Connect and subscribe, appending each connection to ``conns`` (closed by the caller)."""
    if isinstance(redis, RedisCluster):
        await redis.initialize()
        groups: dict[str, list[str | bytes]] = {}
        for ch in channels:
            groups.setdefault(node_name(redis, _text(ch)), []).append(ch)
        for chans in groups.values():
            conns.append((await dedicated_for(redis, _text(chans[0])), chans))
    else:
        conns.append((dedicated(redis), list(channels)))
    for conn, chans in conns:
        await conn.connect()
        if isinstance(redis, RedisCluster):
            # One SSUBSCRIBE per channel: one may only name channels of a single slot.
            for ch in chans:
                await conn.send("SSUBSCRIBE", ch)
        else:
            await conn.send("SUBSCRIBE", *chans)
        for _ in chans:
            await conn.read(push=True)  # confirmations


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _read(
    conn: RawConnection, kind: bytes, on_message: Callable[[bytes, bytes], None]
) -> None:
    # Quiet for as long as nothing happens: no socket timeout. Each message is handed on as it
    # arrives, from the connection's data callback (RawConnection.deliver).
    def on_reply(msg: Any) -> None:
        if isinstance(msg, list) and len(msg) == 3:
            if msg[0] == kind:
                on_message(msg[1], msg[2])
            elif msg[0] == b"sunsubscribe":
                # The slot moved to another node (resharding, failover): subscribe again there.
                raise ConnectionError("a sharded channel's slot moved")

    await conn.deliver(on_reply)


async def resubscribe_pause(redis: Client) -> None:
    """Before subscribing again on a cluster: read the slot map again (best effort)."""
    if isinstance(redis, RedisCluster):
        with contextlib.suppress(Exception):
            await refresh_slots(redis)
