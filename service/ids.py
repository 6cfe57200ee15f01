"""Request ids: opaque, URL-safe, unguessable and roughly time-ordered."""

from __future__ import annotations

import secrets

from service.keys import OP_CODE_LEN, encode_base32, op_code

TIME_LEN = 10  # 50 bits of milliseconds
RANDOM_LEN = 20  # 100 random bits
ID_LEN = TIME_LEN + RANDOM_LEN + OP_CODE_LEN


def new_request_id(op: str, now_ms: int) -> str:
    """A new id: time, 100 random bits, then the operation's code."""
    return (
        encode_base32(now_ms, TIME_LEN)
        + encode_base32(secrets.randbits(5 * RANDOM_LEN), RANDOM_LEN)
        + op_code(op)
    )


def looks_like_id(value: str) -> bool:
    """Cheap syntax check before any Redis look-up."""
    from service.keys import ALPHABET

    return len(value) == ID_LEN and all(c in ALPHABET for c in value)


def id_op_code(request_id: str) -> str:
    """The operation code an id ends with."""
    return request_id[-OP_CODE_LEN:]
