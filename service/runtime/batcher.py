"""Auto-pipelining: calls made in the same event-loop tick go to Redis as pipelines.

With many concurrent requests (or many jobs finishing at once) this turns N round trips and N
socket writes into a few, which is where redis-py spends most of its time per call. A busy
tick's calls leave in pipelines of ``FLUSH_AT`` as they are made, so Redis works on one while
the process prepares the next.

A batcher holds at most ``max_connections`` of the pool's connections (a quarter of the pool
unless told): past that many pipelines in flight, further calls wait their turn in order and
leave merged into pipelines of up to ``MAX_BATCH`` as connections come free. A burst of any
size thus never exhausts the pool, which keeps the rest for blocking waits and plain commands.

With :meth:`Batcher.wait_replicas`, a pipeline carrying a call of the named scripts ends with
``WAIT <replicas> <timeout>`` on the same connection (on a cluster, the node's): no extra round
trip, only the replicas' latency. Calls of those scripts whose writes too few replicas
confirmed fail with :class:`NotReplicated` (an outage: 503 + ``Retry-After``).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from hiredis import pack_command
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, NoScriptError, ResponseError

from service.runtime.redis import RawConnection, borrow, give_back, pool_size

MAX_BATCH = 512
# A tick's calls go out in pipelines of this many as they are made, not all at the tick's end:
# Redis runs the first while this process prepares the rest, instead of both taking turns.
# 32 measured best for 50 concurrent submits: 25-35 % more HTTP enqueues a second than one
# pipeline per tick (the API went from about 85 % busy, waiting on Redis, to about 100 %).
FLUSH_AT = 32
READ_TIMEOUT = 10.0
# The share of the pool a batcher takes by default: a process has two (the queue's and the
# webhook store's), so half the pool stays for blocking waits, pub/sub and plain commands.
POOL_SHARE = 4

# A script call (script, (numkeys, *keys_and_args)) or a plain command (None, command), and
# its future; or calls merged into one (see ``Batcher.call_merged``) and their futures.
_Call = tuple[
    "Script | None",
    "Sequence[Any] | _Merged",
    "asyncio.Future[Any] | list[asyncio.Future[Any]]",
]


class NotReplicated(ConnectionError):
    """A call's writes were not confirmed by enough replicas in time (``WAIT``): they may be
    lost if the master fails now, so they are not acknowledged. Never retried by the batcher
    (the script ran): the client retries, with its Idempotency-Key."""


class _Wait:
    """``WAIT replicas timeout`` after the pipelines carrying a call of ``scripts``."""

    __slots__ = ("command", "replicas", "scripts", "seconds")

    def __init__(self, scripts: Sequence[Script], replicas: int, timeout: float) -> None:
        self.scripts = frozenset(id(s) for s in scripts)
        self.replicas = replicas
        self.seconds = timeout
        command: tuple[Any, ...] = ("WAIT", replicas, max(1, round(timeout * 1000)))
        self.command = pack_command(command)

    def needed(self, batch: Sequence[_Call]) -> bool:
        """Whether ``batch`` carries a call of one of the scripts."""
        return any(id(c[0]) in self.scripts for c in batch)

    def apply(self, batch: Sequence[_Call], replies: list[Any], confirmed: Any) -> None:
        """Fail those calls' replies unless ``confirmed`` (WAIT's reply) reaches the count."""
        if isinstance(confirmed, int) and confirmed >= self.replicas:
            return
        why = confirmed if isinstance(confirmed, Exception) else f"{confirmed} confirmed"
        error = NotReplicated(
            f"writes not confirmed by {self.replicas} replica(s) within {self.seconds} s ({why})"
        )
        for i, call in enumerate(batch):
            if id(call[0]) in self.scripts and not isinstance(replies[i], Exception):
                replies[i] = error


class Script:
    """A Lua script known by its SHA; loaded on first use and after a server restart.

    With a ``library`` (its text naming the library and its one function ``@NAME@``; see
    ``service.runtime.lua``), it runs as that Redis Function (``FCALL``) where the server has
    Functions, else by ``EVALSHA`` of ``source``. The function's name ends with the library's
    hash: a process running another version of a script calls another function.
    """

    def __init__(
        self, source: str, sha: str, library: str | None = None, label: str = "script"
    ) -> None:
        self.source = source
        self.sha = sha
        self.label = label
        self.template = library
        self.function: str | None = None
        self.library: str | None = None
        if library is not None:
            digest = hashlib.sha1(library.encode()).hexdigest()[:16]
            self.function = f"acceptd_{label}_{digest}"
            self.library = library.replace("@NAME@", self.function)

    @classmethod
    def of(cls, source: str, library: str | None = None, label: str = "script") -> Script:
        """A script from its source (and its library text, if it has one)."""
        return cls(source, hashlib.sha1(source.encode()).hexdigest(), library, label)

    def edited(self, edit: Callable[[str], str]) -> Script:
        """This script with ``edit`` applied to both its forms (a cluster's variant)."""
        library = edit(self.template) if self.template is not None else None
        return Script.of(edit(self.source), library, self.label)

    def load(self, functions: bool) -> tuple[str, ...]:
        """The command that loads it on a server that has not got it: its library where
        ``functions`` (the server has them), else its source."""
        if functions and self.library is not None:
            return ("FUNCTION", "LOAD", "REPLACE", self.library)
        return ("SCRIPT", "LOAD", self.source)


class _LoadRefused:
    """A script's load that the server refused (its error), in place of the call's reply."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def missing(reply: Any) -> bool:
    """Whether a script call's reply says the server has not got the script (or function)."""
    return isinstance(reply, NoScriptError) or (
        isinstance(reply, ResponseError) and str(reply).startswith("Function not found")
    )


def without_functions(reply: Any) -> bool:
    """Whether a reply says the server has no Functions (``FCALL``, ``FUNCTION``: Redis
    before 7.0)."""
    if not isinstance(reply, ResponseError):
        return False
    # "unknown command 'FCALL', with args beginning with: ..." (backquotes before Redis 7)
    command = str(reply).lower().split(",", 1)[0]
    return command.startswith("unknown command") and ("fcall" in command or "function" in command)


class _Merged:
    """The KEYS and ARGV of calls merged into one EVALSHA; iterates as numkeys, KEYS, ARGV."""

    __slots__ = ("argv", "keys")

    def __init__(self, keys: list[Any], argv: list[Any]) -> None:
        self.keys = keys
        self.argv = argv

    def __iter__(self) -> Iterator[Any]:
        return itertools.chain((len(self.keys),), self.keys, self.argv)


class Batcher:
    """Collects script calls and commands and sends each tick's calls as pipelines."""

    def __init__(self, redis: Redis, max_connections: int | None = None) -> None:
        self.redis = redis
        self.max_connections = max_connections or max(1, pool_size(redis) // POOL_SHARE)
        # Pipelines waiting for a connection, oldest first; each sender takes the next ones
        # when its exchange ends, so at most ``max_connections`` exchanges run at once.
        self._backlog: collections.deque[list[_Call]] = collections.deque()
        self._senders = 0
        self._pending: list[_Call] = []
        self._calls = 0  # calls in ``_pending``, merged ones counted one by one
        # The merged call (in ``_pending``) of a (script, fixed keys, fixed argv) and the
        # futures of the calls it collects.
        self._merged: dict[
            tuple[int, tuple[Any, ...], tuple[Any, ...]],
            tuple[_Merged, list[asyncio.Future[Any]]],
        ] = {}
        self._scheduled = False
        self._inflight: set[asyncio.Task[None]] = set()
        self._idle: list[RawConnection] = []
        self._wait: _Wait | None = None
        # Scripts run as Redis Functions until the server says it has none (then by SHA).
        self.functions = True

    def wait_replicas(self, scripts: Sequence[Script], replicas: int, timeout: float) -> None:
        """End every pipeline carrying a call of ``scripts`` with ``WAIT replicas timeout``
        (``replicas`` 0: never); see :class:`NotReplicated`."""
        self._wait = _Wait(scripts, replicas, timeout) if replicas > 0 else None

    def call(
        self, script: Script, keys_and_args: Sequence[Any], numkeys: int
    ) -> asyncio.Future[Any]:
        """Queue one EVALSHA; the future resolves with its reply (or its error)."""
        return self._queue(script, (numkeys, *keys_and_args))

    def call_merged(
        self,
        script: Script,
        keys: tuple[Any, ...],
        argv: tuple[Any, ...],
        call_keys: Sequence[Any],
        call_argv: Sequence[Any],
    ) -> asyncio.Future[Any]:
        """Queue a call of a script that takes any number of calls at once.

        The calls of ``script`` with the same fixed ``keys`` and ``argv`` that leave together
        go as one EVALSHA: the fixed KEYS, then each call's ``call_keys``, then the fixed ARGV,
        then each call's ``call_argv`` (numkeys = fixed + per call x calls). One script run and
        one reply instead of one each: the script answers a list with one reply per call, in
        order, and each future resolves with its own (an error entry sets its exception).
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        slot_key = (id(script), keys, argv)
        slot = self._merged.get(slot_key)
        if slot is None:
            merged, futs = _Merged([*keys, *call_keys], [*argv, *call_argv]), [fut]
            self._merged[slot_key] = (merged, futs)
            self._pending.append((script, merged, futs))
        else:
            merged, futs = slot
            merged.keys.extend(call_keys)
            merged.argv.extend(call_argv)
            futs.append(fut)
        self._added(loop)
        return fut

    def command(self, *args: Any) -> asyncio.Future[Any]:
        """Queue one plain command (its reply is not parsed, as with ``NEVER_DECODE``)."""
        return self._queue(None, args)

    def _queue(self, script: Script | None, args: Sequence[Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((script, args, fut))
        self._added(loop)
        return fut

    def flush_now(self) -> None:
        """Send what is queued now, not at the end of this loop iteration: for a call whose
        reply others wait on, queued ahead of work that will hold this loop for a while."""
        if self._pending:
            self._flush()

    def flush_if_idle(self) -> None:
        """Send what is queued now if no pipeline is in flight: for a call whose caller waits
        on it with nothing else to send (a synchronous request's submit, a handed run's
        finish), which then leaves in this loop iteration rather than at its end. With
        pipelines in flight, calls keep gathering for the next flush."""
        if self._pending and not self._senders:
            self._flush()

    def _added(self, loop: asyncio.AbstractEventLoop) -> None:
        self._calls += 1
        if self._calls >= FLUSH_AT:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        self._calls = 0
        self._merged.clear()
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            if self._senders >= self.max_connections:
                self._backlog.append(batch)
                continue
            self._senders += 1
            task = asyncio.create_task(self._sender(batch, self._written(batch)))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    def _wait_of(self, batch: list[_Call]) -> _Wait | None:
        # The WAIT that follows the batch, if it carries a call of the waited-for scripts.
        return self._wait if self._wait is not None and self._wait.needed(batch) else None

    def _written(self, batch: list[_Call]) -> RawConnection | None:
        # The batch written here and now on a connection kept from an earlier exchange (the
        # sender task then only reads the replies): it leaves this loop iteration rather than
        # at the task's first step, one iteration later. None: the task sends it.
        if not self._idle:
            return None
        try:
            data = _encode(batch, self._wait_of(batch), self.functions)
        except UnicodeEncodeError:
            return None  # the sender fails the calls that cannot be encoded
        conn = self._idle.pop()
        if conn.write_now(data):
            return conn
        self._idle.append(conn)
        return None

    async def _sender(self, batch: list[_Call], written: RawConnection | None = None) -> None:
        # One connection's worth of exchanges: this batch, then what waited meanwhile.
        try:
            if written is not None:
                await self._send(batch, written)
                batch = self._next_batch()
            while batch:
                await self._send(batch)
                batch = self._next_batch()
        finally:
            self._senders -= 1
            if self._backlog and not self._senders:
                # Cancelled with calls still waiting and no sender left to take them.
                while self._backlog:
                    _fail(self._backlog.popleft(), ConnectionError("the batcher was stopped"))

    def _next_batch(self) -> list[_Call]:
        """The oldest waiting pipelines, merged up to ``MAX_BATCH`` calls (empty when none)."""
        if not self._backlog:
            return []
        batch = self._backlog.popleft()
        while self._backlog and len(batch) + len(self._backlog[0]) <= MAX_BATCH:
            batch = batch + self._backlog.popleft()
        return batch

    async def _send(self, batch: list[_Call], written: RawConnection | None = None) -> None:
        # Every future of the batch is resolved, whatever happens: a caller never hangs.
        try:
            replies = await self._replies(batch, written)
        except UnicodeEncodeError:
            # A str argument UTF-8 cannot carry (a lone surrogate) fails its own call only.
            batch = _without_unencodable(batch)
            if batch:
                await self._send(batch)
            return
        except BaseException as exc:
            _fail(batch, exc if isinstance(exc, Exception) else ConnectionError())
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, fut), reply in zip(batch, replies, strict=True):
            if not isinstance(fut, list):
                _settle(fut, reply)
            elif isinstance(reply, list) and len(reply) == len(fut):
                for f, own in zip(fut, reply, strict=True):
                    _settle(f, own)
            else:  # the whole merged call failed (or answered something else): all of it did
                error = reply if isinstance(reply, Exception) else ResponseError(repr(reply))
                for f in fut:
                    _settle(f, error)

    async def _replies(self, batch: list[_Call], written: RawConnection | None = None) -> list[Any]:
        replies = await self._execute(batch, written)
        retry = [(batch[i], i) for i in self._unloaded(replies)]
        if retry:
            again = await self._loaded_and_resent([c for c, _ in retry])
            if self.functions and any(isinstance(r, _LoadRefused) for r in again):
                # The server refuses FUNCTION LOAD (an ACL, a managed service's limits): the
                # scripts run by SHA from now on, as on a server without Functions.
                self.functions = False
                again = await self._loaded_and_resent([c for c, _ in retry])
            for (_, i), reply in zip(retry, again, strict=True):
                replies[i] = reply.error if isinstance(reply, _LoadRefused) else reply
        return replies

    def _unloaded(self, replies: Sequence[Any]) -> list[int]:
        """The calls whose script the server has not got: to load and send again. A server
        without Functions (Redis before 7.0) turns this batcher to EVALSHA for good."""
        if self.functions and any(without_functions(r) for r in replies):
            self.functions = False
        return [i for i, r in enumerate(replies) if missing(r) or without_functions(r)]

    async def _loaded_and_resent(self, calls: list[_Call]) -> list[Any]:
        # The server has not got these scripts (first use, restart, FLUSH): load them and
        # resend the calls. It may go away again meanwhile: then those calls fail with that
        # error. The loads go first in the same pipeline, on the batcher's own connection: a
        # connection of the pool's might not be free (see the bound above).
        loop = asyncio.get_running_loop()
        scripts = [s for s in {id(c[0]): c[0] for c in calls}.values() if s is not None]
        loads: list[_Call] = [(None, s.load(self.functions), loop.create_future()) for s in scripts]
        try:
            res = await self._execute([*loads, *calls])
        except Exception as exc:
            return [exc] * len(calls)
        failed = {id(s): _LoadRefused(r) for s, r in zip(scripts, res, strict=False)
                  if isinstance(r, Exception)}  # fmt: skip
        # A call whose script could not be loaded fails with why, not with NOSCRIPT.
        return [failed.get(id(c[0]), r) for c, r in zip(calls, res[len(loads) :], strict=True)]

    async def _execute(self, batch: list[_Call], written: RawConnection | None = None) -> list[Any]:
        try:
            return await self._exchange(batch, written)
        except (ConnectionError, OSError):
            # Connections gone stale (the server restarted): drop the idle ones too, they went
            # with it, and try once more on a fresh connection.
            await self._release_idle(disconnect=True)
            return await self._exchange(batch)

    async def _exchange(
        self, batch: list[_Call], written: RawConnection | None = None
    ) -> list[Any]:
        # One write of every call, then the replies in order, on one connection. This is
        # redis-py's pipeline without its per-command bookkeeping, which the profile showed
        # costing more than the scripts themselves. Connections are kept between batches
        # rather than taken from and returned to the pool each time (a lock and metrics).
        # ``written``: the connection the batch was written on already (``_written``).
        if written is not None:
            conn = written
        elif self._idle:
            conn = self._idle.pop()
        else:
            # While the batcher holds it, one deadline covers the whole exchange (below): a
            # socket timeout would make redis-py wrap every write in a task (wait_for).
            conn = await borrow(self.redis)
        wait = self._wait_of(batch)
        try:
            replies: list[Any] = []
            async with asyncio.timeout(READ_TIMEOUT + (wait.seconds if wait else 0.0)):
                if written is None:
                    await conn.send_packed(_encode(batch, wait, self.functions))
                else:
                    await conn.drained()
                for _ in batch:
                    try:
                        replies.append(await conn.read())
                    except ResponseError as exc:  # an error reply; the connection is fine
                        replies.append(exc)
                if wait is not None:
                    wait.apply(batch, replies, await read_reply(conn))
        except BaseException:
            await conn.close()
            await give_back(self.redis, conn)
            raise
        self._idle.append(conn)
        return replies

    async def _release_idle(self, *, disconnect: bool = False) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            if disconnect:
                await conn.close()
            await give_back(self.redis, conn)

    async def close(self) -> None:
        """Wait for pipelines in flight, then give the connections back to the pool."""
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        await self._release_idle()


async def read_reply(conn: RawConnection) -> Any:
    """The next reply, an error reply returned rather than raised."""
    try:
        return await conn.read()
    except ResponseError as exc:
        return exc


def _fail(batch: list[_Call], error: Exception) -> None:
    for _, _, fut in batch:
        for f in fut if isinstance(fut, list) else (fut,):
            _settle(f, error)


def _settle(fut: asyncio.Future[Any], reply: Any) -> None:
    if fut.done():
        return
    if isinstance(reply, Exception):
        fut.set_exception(reply)
    else:
        fut.set_result(reply)


def _without_unencodable(batch: list[_Call]) -> list[_Call]:
    """The calls of ``batch`` that encode; the others fail with their encoding error."""
    kept: list[_Call] = []
    for call in batch:
        try:
            _pack([call], False)
        except UnicodeEncodeError as exc:
            _fail([call], exc)
        else:
            kept.append(call)
    return kept


def _encode(batch: list[_Call], wait: _Wait | None, functions: bool) -> bytes:
    """The batch as RESP, then its ``WAIT`` if any."""
    data = _pack(batch, functions)
    return data + wait.command if wait else data


def _pack(batch: list[_Call], functions: bool) -> bytes:
    """The RESP encoding of every call in the batch (hiredis's C encoder): scripts by
    ``FCALL`` where ``functions`` (see :class:`Script`), else by ``EVALSHA``."""
    return b"".join([pack_call(script, args, functions) for script, args, _ in batch])


def pack_call(script: Script | None, args: Iterable[Any], functions: bool) -> bytes:
    """One call (a script's, or a plain command) as RESP."""
    if script is None:
        command: tuple[Any, ...] = tuple(args)
    elif functions and script.function is not None:
        command = ("FCALL", script.function, *args)
    else:
        command = ("EVALSHA", script.sha, *args)
    packed: bytes = pack_command(command)
    return packed
