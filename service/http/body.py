"""Request bodies: the one JSON reader and parser every route that takes a body uses.

Limits beyond the body size (CONTRACT.md section 2): at most :data:`MAX_DEPTH` nested arrays
and objects, integers of at most 4,300 digits (Python's own conversion limit) and numbers a
double can hold. Past them a body is a 400 problem, decided here, so no handler, worker or
encoder ever meets a value it cannot take back (a 1,000-deep array parses, but Python's
encoder and decoder give up on it with ``RecursionError``).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson
from aiohttp import StreamReader, web

from service.http.errors import Problem

JSON = "application/json"
MAX_DEPTH = 64

# orjson turns integers beyond 64 bits into floats, which a schema would then judge.
_LONG_DIGITS = re.compile(rb"\d{19}")


def require_json(request: web.Request) -> None:
    """415 unless the body is declared as JSON (``application/json`` or ``…+json``)."""
    header = request.headers.get("Content-Type", "")
    # The common exact value skips aiohttp's full media-type parse.
    ctype = JSON if header == JSON else request.content_type
    if ctype != JSON and not (ctype.startswith("application/") and ctype.endswith("+json")):
        raise Problem(
            415,
            f"send the input as {JSON}, not {ctype or 'no content type'}",
            slug="unsupported-media-type",
            headers={"Accept-Post": JSON},
        )


def read_arrived(request: web.Request, limit: int) -> bytes | None:
    """The whole body when it came with the headers (the usual small request), taken as is
    without a coroutine, read()'s chunk loop or copies; None while more is to come."""
    content = request.content
    if not content.is_eof():
        return None
    raw = content.read_nowait()  # its length is the Content-Length
    if len(raw) > limit:
        raise _too_large(limit)
    return raw


async def read_raw(request: web.Request, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes (413 past it)."""
    content = request.content
    if content.is_eof():
        raw = content.read_nowait()
    else:
        if request.content_length is None:
            # Chunked: counted as it arrives, so a body past the limit is never held whole
            # (the application's own cap is the largest of all routes' limits).
            raw = await _read_chunked(content, limit)
        elif request.content_length > limit:
            raise _too_large(limit)
        else:
            raw = await request.read()
    if len(raw) > limit:
        raise _too_large(limit)
    return raw


async def _read_chunked(content: StreamReader, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


def decode(raw: bytes, *, exact_numbers: bool = True) -> tuple[Any, str]:
    """The parsed body and its text; 400 problem for anything not JSON or past the limits.

    ``exact_numbers``: integers beyond 64 bits are parsed exactly (for schema checks) rather
    than by orjson, which turns them into floats.
    """
    if exact_numbers and _LONG_DIGITS.search(raw):
        data, text = _decode_slowly(raw)
    else:
        try:
            # orjson first, several times faster; what it refuses (lone surrogate escapes,
            # 1e400, nesting past 1024, errors) goes to the standard library, which decides
            # and explains.
            data = orjson.loads(raw)
            text = raw.decode("utf-8")
        except orjson.JSONDecodeError:
            data, text = _decode_slowly(raw)
    # Nesting past the limit needs more than MAX_DEPTH brackets: counting them (C speed) spares
    # the walk for nearly every body.
    if (
        len(raw) > 2 * MAX_DEPTH
        and raw.count(b"[") + raw.count(b"{") > MAX_DEPTH
        and _deeper_than(data, MAX_DEPTH)
    ):
        raise _too_deep()
    return data, text


def _deeper_than(data: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` levels (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)] if isinstance(data, dict | list) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


class _NumberOutOfRange(ValueError):
    pass


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _NumberOutOfRange(text)
    return value


def _not_json(name: str) -> Any:
    # Python's parser accepts NaN and Infinity; JSON does not.
    raise json.JSONDecodeError(f"{name} is not valid JSON", name, 0)


_DECODER = json.JSONDecoder(parse_constant=_not_json, parse_float=_float)


def _decode_slowly(raw: bytes) -> tuple[Any, str]:
    if not raw.strip():
        raise Problem(400, "the body is empty; send the operation's input as JSON",
                      slug="malformed-json")  # fmt: skip
    try:
        text = raw.decode("utf-8")
        data = _DECODER.decode(text)
    except UnicodeDecodeError:
        raise Problem(400, "the body is not UTF-8", slug="malformed-json") from None
    except json.JSONDecodeError as exc:
        raise Problem(
            400,
            f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            slug="malformed-json",
        ) from None
    except RecursionError:
        raise _too_deep() from None
    except ValueError:
        # An integer of more than 4,300 digits, or a number beyond a double's range.
        raise Problem(
            400,
            "the body holds a number out of range (at most 4300 digits, and within a double's"
            " range)",
            slug="json-number-out-of-range",
        ) from None
    if _has_lone_surrogate(data):
        # "\ud800" alone: no Unicode character, so it cannot be stored or sent back as UTF-8
        # (RFC 7493, I-JSON, forbids it; orjson refuses it too).
        raise Problem(
            400,
            "the body holds a string with an unpaired UTF-16 surrogate escape (\\ud800-\\udfff)",
            slug="malformed-json",
        )
    return data, text


_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_lone_surrogate(data: Any) -> bool:
    """Whether a string (or an object's key) holds a surrogate: the decoder joins valid pairs."""
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                return True
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _too_deep() -> Problem:
    return Problem(
        400,
        f"the body nests arrays and objects more than {MAX_DEPTH} levels deep",
        slug="json-too-deep",
        max_depth=MAX_DEPTH,
    )


def _too_large(limit: int) -> Problem:
    return Problem(413, f"the body exceeds the {limit}-byte limit", slug="too-large", limit=limit)
