"""Every Redis key and channel name, built in one place.

All keys of one operation share the hash tag ``{op}``, so every script touches a single
Redis Cluster slot. Request ids end with a short code naming their operation, so a request's
keys can be found from its id alone.

An operation with ``shards: N`` (N > 1) has N queues: shard 0 keeps the tag ``{op}`` (the same
keys as an unsharded operation), shard ``s`` has the tag :func:`shard_tag` (``{op~s}``, or
``{op~s.k}``: the first that falls in its own Nth of the slot space, counted on from shard 0's,
so that N shards spread evenly over masters owning equal slot ranges). Every key function takes
that tag where it says ``op``. A sharded request's id names its shard (:mod:`service.queue.ids`).
"""

from __future__ import annotations

import binascii
import functools
import hashlib
from dataclasses import dataclass

ROOT = "acceptd"

SLOTS = 16384
# Shards are named by one id character (service.queue.ids).
MAX_SHARDS = 32

OP_CODE_LEN = 4


def prefix(op: str) -> str:
    """The prefix of every key of operation ``op``."""
    return f"{ROOT}:{{{op}}}:"


def key(op: str, *parts: str) -> str:
    """A key of operation ``op``: ``acceptd:{op}:part:part``."""
    return prefix(op) + ":".join(parts)


def record(op: str, request_id: str) -> str:
    """The hash holding one request's state."""
    return f"{ROOT}:{{{op}}}:r:{request_id}"


def ev(op: str, request_id: str) -> str:
    """A streamed request's kept events, for resuming its stream."""
    return f"{ROOT}:{{{op}}}:ev:{request_id}"


def client_index(op: str, client: str) -> str:
    """A client's requests of one operation, scored by creation time."""
    return f"{ROOT}:{{{op}}}:c:{client}"


def member(request_id: str, client: str) -> str:
    """A request's member of ``pending``, ``running`` and ``delayed``: its id, then its client
    (client names hold no newline), so a script popping it can declare the client's keys."""
    return f"{request_id}\n{client}"


def parse_member(member: str) -> tuple[str, str]:
    """The request id and client of a member of ``pending``, ``running`` or ``delayed``."""
    request_id, _, client = member.partition("\n")
    return request_id, client


def idempotency(op: str, client: str, key_hash: str) -> str:
    """An Idempotency-Key's request id."""
    return f"{ROOT}:{{{op}}}:idem:{client}:{key_hash}"


def rate_limit(op: str, client: str) -> str:
    """A client's token bucket for submits to the operation."""
    return f"{ROOT}:{{{op}}}:rl:{client}"


def glob(op: str, client: str) -> str:
    """Set while the client streams all its requests: their events are kept in :func:`cev`."""
    return f"{ROOT}:{{{op}}}:glob:{client}"


def cev(op: str, client: str) -> str:
    """A client's kept events of the operation (a stream), for resuming its all-requests stream."""
    return f"{ROOT}:{{{op}}}:cev:{client}"


def hand(op: str) -> str:
    """The list where submits hand requests straight to idle workers (see ``lua/submit.lua``)."""
    return key(op, "hand")


def signal(op: str, worker: str) -> str:
    """A worker's own list, only ever holding the empty entry that ends its blocking pop."""
    return f"{ROOT}:{{{op}}}:signal:{worker}"


def pending(op: str) -> str:
    """Queued members (:func:`member`) by priority and arrival."""
    return key(op, "pending")


def delayed(op: str) -> str:
    """Members waiting out a retry backoff, by due time."""
    return key(op, "delayed")


def running(op: str) -> str:
    """Leased members by lease deadline."""
    return key(op, "running")


def deadlines(op: str) -> str:
    """Never-started requests with a queue timeout (members as ``pending``), by deadline."""
    return key(op, "deadlines")


def wake(op: str) -> str:
    """The list holding at most one marker, that idle workers block on."""
    return key(op, "wake")


def seq(op: str) -> str:
    """The arrival counter that orders requests of one priority."""
    return key(op, "seq")


def idle(op: str) -> str:
    """Workers registered idle (``"<lease_ms> <worker>"``), by expiry."""
    return key(op, "idle")


def workers(op: str) -> str:
    """Worker ids by heartbeat deadline."""
    return key(op, "workers")


def layout(op: str) -> str:
    """The version of the key layout the operation's data is in (see ``Queue.upgrade``)."""
    return key(op, "layout")


def tput(op: str) -> str:
    """Finishes and run time in 5 s buckets (throughput and ETA)."""
    return key(op, "tput")


def hist_seconds(op: str) -> str:
    """The console's per-second history ring, the last 15 minutes (``lua/includes/history``)."""
    return key(op, "hist:s")


def hist_minutes(op: str) -> str:
    """The console's per-minute history ring with wait and run time histograms, the last 24 h."""
    return key(op, "hist:m")


def processes() -> str:
    """Worker and dispatcher processes' presence (a hash: process id → JSON), for the console."""
    return f"{ROOT}:{{_console}}:processes"


def outbox(op: str) -> str:
    """The stream of webhook events, written in the step that changes state."""
    return key(op, "outbox")


def hooked(op: str, status: str) -> str:
    """The clients with a webhook endpoint for the event of ``status``."""
    return key(op, "hooked:" + status)


def events_channel(op: str) -> str:
    """The pub/sub channel carrying every state change of the operation's requests."""
    return key(op, "events")


def watched_channel(op: str) -> str:
    """The channel carrying the state changes of requests that a caller waits for or streams."""
    return key(op, "watched")


def control_channel(op: str) -> str:
    """The pub/sub channel telling workers to cancel running requests."""
    return key(op, "control")


@dataclass(frozen=True, slots=True)
class OpKeys:
    """The keys and channels of one operation that do not depend on a request."""

    pending: str
    delayed: str
    running: str
    deadlines: str
    wake: str
    seq: str
    idle: str
    hand: str
    workers: str
    tput: str
    hist_s: str
    hist_m: str
    outbox: str
    hooked_running: str
    hooked_succeeded: str
    hooked_failed: str
    hooked_canceled: str
    events_channel: str
    watched_channel: str
    control_channel: str


@functools.lru_cache(maxsize=1024)
def of(op: str) -> OpKeys:
    """The operation's own keys and channels, built once."""
    return OpKeys(
        pending=pending(op),
        delayed=delayed(op),
        running=running(op),
        deadlines=deadlines(op),
        wake=wake(op),
        seq=seq(op),
        idle=idle(op),
        hand=hand(op),
        workers=workers(op),
        tput=tput(op),
        hist_s=hist_seconds(op),
        hist_m=hist_minutes(op),
        outbox=outbox(op),
        hooked_running=hooked(op, "running"),
        hooked_succeeded=hooked(op, "succeeded"),
        hooked_failed=hooked(op, "failed"),
        hooked_canceled=hooked(op, "canceled"),
        events_channel=events_channel(op),
        watched_channel=watched_channel(op),
        control_channel=control_channel(op),
    )


@functools.lru_cache(maxsize=1024)
def op_code(op: str) -> str:
    """The short code that ends the ids of the operation's requests."""
    digest = hashlib.sha256(op.encode()).digest()
    return encode_base32(int.from_bytes(digest[:4], "big") >> (32 - 5 * OP_CODE_LEN), OP_CODE_LEN)


ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's: URL-safe, sorts like the numbers


# Two characters (10 bits) at a time.
PAIRS = [a + b for a in ALPHABET for b in ALPHABET]


def encode_base32(value: int, length: int) -> str:
    """Fixed-width Crockford base32 of a non-negative integer."""
    out = []
    if length % 2:
        out.append(ALPHABET[value & 31])
        value >>= 5
    for _ in range(length // 2):
        out.append(PAIRS[value & 1023])  # two characters per step
        value >>= 10
    return "".join(reversed(out))


def key_slot(tag: str) -> int:
    """The Redis Cluster slot of keys tagged ``{tag}`` (CRC16/XMODEM, as Redis computes it)."""
    return binascii.crc_hqx(tag.encode(), 0) % SLOTS


@functools.lru_cache(maxsize=4096)
def shard_tag(op: str, shard: int, shards: int) -> str:
    """The hash tag of shard ``shard`` of ``op`` split in ``shards``: ``op`` itself for shard 0."""
    if shard == 0:
        return op
    # The Nth of the slot space this shard should fall in: shard 0's, then the next ones.
    want = (key_slot(op) * shards // SLOTS + shard) % shards
    base = f"{op}~{shard}"
    tag, k = base, 0
    while key_slot(tag) * shards // SLOTS != want:
        k += 1
        tag = f"{base}.{k}"
    return tag


def shard_tags(op: str, shards: int) -> tuple[str, ...]:
    """The tags of every shard of ``op``, shard 0 first."""
    return tuple(shard_tag(op, s, shards) for s in range(shards))
