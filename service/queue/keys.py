"""Every Redis key and channel name, built in one place.

All keys of one operation share the hash tag ``{op}``, so every script touches a single
Redis Cluster slot. Request ids end with a short code naming their operation, so a request's
keys can be found from its id alone.
"""

from __future__ import annotations

import functools
import hashlib

ROOT = "acceptd"

OP_CODE_LEN = 4


def prefix(op: str) -> str:
    """The prefix of every key of operation ``op``; Lua scripts append suffixes to it."""
    return f"{ROOT}:{{{op}}}:"


def key(op: str, *parts: str) -> str:
    """A key of operation ``op``: ``acceptd:{op}:part:part``."""
    return prefix(op) + ":".join(parts)


def record(op: str, request_id: str) -> str:
    """The hash holding one request's state."""
    return key(op, "r", request_id)


def client_index(op: str, client: str) -> str:
    """A client's requests of one operation, scored by creation time."""
    return key(op, "c", client)


def idempotency(op: str, client: str, key_hash: str) -> str:
    """An Idempotency-Key's request id (the submit script builds it alike from its parts)."""
    return key(op, "idem", client, key_hash)


def hand_list(op: str, worker: str) -> str:
    """The list where submits hand requests straight to an idle worker (see ``scripts.CLAIM``)."""
    return key(op, "hand", worker)


def events_channel(op: str) -> str:
    """The pub/sub channel carrying every state change of the operation's requests."""
    return key(op, "events")


def watched_channel(op: str) -> str:
    """The channel carrying the state changes of requests that a caller waits for or streams."""
    return key(op, "watched")


def control_channel(op: str) -> str:
    """The pub/sub channel telling workers to cancel running requests."""
    return key(op, "control")


@functools.lru_cache(maxsize=1024)
def op_code(op: str) -> str:
    """The short code that ends the ids of the operation's requests."""
    digest = hashlib.sha256(op.encode()).digest()
    return encode_base32(int.from_bytes(digest[:4], "big") >> (32 - 5 * OP_CODE_LEN), OP_CODE_LEN)


ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's: URL-safe, sorts like the numbers


_PAIRS = [a + b for a in ALPHABET for b in ALPHABET]


def encode_base32(value: int, length: int) -> str:
    """Fixed-width Crockford base32 of a non-negative integer."""
    out = []
    if length % 2:
        out.append(ALPHABET[value & 31])
        value >>= 5
    for _ in range(length // 2):
        out.append(_PAIRS[value & 1023])  # two characters per step
        value >>= 10
    return "".join(reversed(out))
