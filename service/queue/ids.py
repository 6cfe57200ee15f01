"""Request ids: opaque, URL-safe, unguessable and roughly time-ordered."""

from __future__ import annotations

import os

from service.queue.keys import ALPHABET, OP_CODE_LEN, PAIRS, encode_base32, op_code

TIME_LEN = 10  # 50 bits of milliseconds
RANDOM_LEN = 20  # 100 random bits
ID_LEN = TIME_LEN + RANDOM_LEN + OP_CODE_LEN


# Random characters come from the OS CSPRNG, one byte per character mapped to the alphabet by
# its low 5 bits (256 is a multiple of 32, so every character is uniform: 100 random bits in
# all), translated a pool at a time: one os.urandom and one translate per 256 ids.
_BYTE_TO_CHAR = bytes(ALPHABET[b & 31].encode()[0] for b in range(256))
_POOL_IDS = 256
_pool = ""
_offset = 0
_time_ms = -1
_time_part = ""
# The time part's first six characters change every 2**20 ms (17 minutes): kept, and the last
# four (two pairs of 10 bits) looked up, rather than the whole part encoded at every id.
_high = -1
_high_part = ""


def _random_part() -> str:
    global _pool, _offset
    if _offset + RANDOM_LEN > len(_pool):
        _pool = os.urandom(RANDOM_LEN * _POOL_IDS).translate(_BYTE_TO_CHAR).decode()
        _offset = 0
    part = _pool[_offset : _offset + RANDOM_LEN]
    _offset += RANDOM_LEN
    return part


def new_request_id(op: str, now_ms: int, shard_code: str = "") -> str:
    """A new id: time, 100 random bits, then the operation's code.

    A sharded operation's ids (``shard_code``, :func:`shard_code`) end their random part with
    the request's shard and priority instead (90 random bits): any process finds the request's
    shard, and its place in the queue, from the id alone.
    """
    global _time_ms, _time_part, _high, _high_part
    if now_ms != _time_ms:  # requests of one millisecond share it
        value = now_ms & _TIME_MASK
        if value >> 20 != _high:
            _high = value >> 20
            _high_part = encode_base32(_high, TIME_LEN - 4)
        _time_ms = now_ms
        _time_part = _high_part + PAIRS[(value >> 10) & 1023] + PAIRS[value & 1023]
    if shard_code:
        return _time_part + _random_part()[: RANDOM_LEN - 2] + shard_code + op_code(op)
    return _time_part + _random_part() + op_code(op)


def shard_code(shard: int, priority: int) -> str:
    """The two characters naming a sharded request's shard (0-31) and priority (-10 to 10)."""
    return ALPHABET[shard] + ALPHABET[priority + 10]


_SHARD_AT = TIME_LEN + RANDOM_LEN - 2
_INDEX = {c: i for i, c in enumerate(ALPHABET)}


def id_shard(request_id: str) -> int:
    """The shard a sharded operation's id names."""
    return _INDEX.get(request_id[_SHARD_AT], 0)


def id_priority(request_id: str) -> int:
    """The priority a sharded operation's id names."""
    return _INDEX.get(request_id[_SHARD_AT + 1], 10) - 10


def id_time_ms(request_id: str) -> int:
    """The id's time part: its submit time in ms (modulo 2**50)."""
    value = 0
    for c in request_id[:TIME_LEN]:
        value = value * 32 + _INDEX.get(c, 0)
    return value


_TIME_MASK = (1 << (5 * TIME_LEN)) - 1


def looks_like_id(value: str) -> bool:
    """Cheap syntax check before any Redis look-up."""
    return len(value) == ID_LEN and all(c in ALPHABET for c in value)


def id_op_code(request_id: str) -> str:
    """The operation code an id ends with."""
    return request_id[-OP_CODE_LEN:]
