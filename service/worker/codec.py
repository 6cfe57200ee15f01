"""The JSON of a job: its input parsed for the handler, its result encoded for the store.

orjson does both, several times faster than the standard library (a tenth of a drain's worker
time was JSON); the standard library takes what orjson would not do exactly or refuses, so
results are what ``json`` would store, but for NaN and infinities, which are not JSON and
become null (docs/contract-notes.md says how results are encoded).
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

import orjson

# Digits enough for an integer past 64 bits, which orjson would read as a float.
_LONG_DIGITS = re.compile(r"\d{19}")
# Subclasses of str, int, dict and list, dataclasses and datetimes go to the standard library's
# encoder (below), which decides as it always did: an IntEnum as its number, a dataclass not.
# orjson's own: a UUID as its string, an Enum member as its value (docs/contract-notes.md).
_ORJSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)


def parse_input(text: str) -> Any:
    """A job's input parsed: by orjson (several times faster), by the standard library where
    orjson would not be exact (integers past 64 bits) or refuses (a lone surrogate escape)."""
    if not _LONG_DIGITS.search(text):
        with contextlib.suppress(orjson.JSONDecodeError):
            return orjson.loads(text)
    return json.loads(text)


def result_to_json(result: Any) -> tuple[str, int]:
    """A result as compact JSON and its size in UTF-8 bytes; TypeError, ValueError or
    RecursionError for one that is not JSON."""
    try:
        # NaN and infinities become null (JSON has neither; JSON.stringify does the same).
        raw = orjson.dumps(result, option=_ORJSON_OPTIONS)
    except TypeError:
        # What orjson refuses: non-string keys, integers past 64 bits, nesting past 255
        # levels, lone surrogates, the types passed through above. The standard library
        # decides, and for a lone surrogate (UnicodeEncodeError) fails here, not the store.
        text = json.dumps(result, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        # ASCII text is its own encoding: no copy is made to measure it.
        return text, len(text) if text.isascii() else len(text.encode())
    return raw.decode(), len(raw)
