"""Request ids: opaque, URL-safe, unguessable and roughly time-ordered."""

from __future__ import annotations

import base64
import os

from service.keys import ALPHABET, OP_CODE_LEN, op_code

TIME_LEN = 10  # 50 bits of milliseconds
RANDOM_LEN = 20  # 100 random bits
ID_LEN = TIME_LEN + RANDOM_LEN + OP_CODE_LEN


_RANDOM_BYTES = 13  # 104 bits from the OS CSPRNG, of which 100 are used
_pool = b""
_offset = 0


def _random_bits() -> int:
    # One os.urandom call per 315 ids instead of one per id (same generator, less overhead).
    global _pool, _offset
    if _offset + _RANDOM_BYTES > len(_pool):
        _pool, _offset = os.urandom(_RANDOM_BYTES * 315), 0
    chunk = _pool[_offset : _offset + _RANDOM_BYTES]
    _offset += _RANDOM_BYTES
    return int.from_bytes(chunk, "big") >> (8 * _RANDOM_BYTES - 5 * RANDOM_LEN)


def new_request_id(op: str, now_ms: int) -> str:
    """A new id: time, 100 random bits, then the operation's code."""
    # 150 bits as 30 base32 characters in one C call: RFC 4648 base32 of the bits, padded to
    # whole bytes, then its alphabet translated to Crockford's (the same digit values).
    bits = ((now_ms & _TIME_MASK) << (5 * RANDOM_LEN) | _random_bits()) << 2
    head = base64.b32encode(bits.to_bytes(19, "big"))[: TIME_LEN + RANDOM_LEN]
    return head.translate(_TO_CROCKFORD).decode() + op_code(op)


_TIME_MASK = (1 << (5 * TIME_LEN)) - 1
_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", ALPHABET.encode())


def looks_like_id(value: str) -> bool:
    """Cheap syntax check before any Redis look-up."""
    return len(value) == ID_LEN and all(c in ALPHABET for c in value)


def id_op_code(request_id: str) -> str:
    """The operation code an id ends with."""
    return request_id[-OP_CODE_LEN:]
