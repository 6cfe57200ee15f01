"""Event ids of the all-requests stream (``/v1/queue/events``): where it stands in each stream.

That stream merges several Redis streams (a client's kept events ``cev``, one per operation,
per shard of a sharded operation, and per client for an operator's ``?client=*``). Each stream
numbers its events on its own (``<ms>-<seq>``, from its node's clock), so one such number says
nothing about the others: two streams number events alike in one millisecond, and a node's
clock may be behind another's. An id holding one number would make a resume skip events of
other streams numbered at or below it, or send some twice.

So a stream merging several sends as each event's ``id:`` a cursor holding, per stream, the last
id it sent: ``v1.<fingerprint>.<base>[.<entry>]…``, all numbers lowercase hex —

- ``fingerprint``: CRC-32 of the stream keys, in order: a cursor applies to the streams it was
  made for (another subscription's resumes from its base on every stream);
- ``base``: ``<ms>[-<seq>]``, the first id not yet handled on every stream without an entry;
- ``entry``: ``<index>_<ms - base ms>[-<seq>]``: the last id sent on the index-th stream.

Entries are kept in index order, so the same position always reads the same. A subscription
of one stream sends its plain ``<ms>-<seq>`` ids, as before; a plain id on resume applies to
every stream. Sending an event costs one dict update and a join of the entries (one per stream
that sent something): no Redis call, no JSON.
"""

from __future__ import annotations

import bisect
import re
import zlib
from collections.abc import Sequence

Pos = tuple[int, int]

MAX_SEQ = 2**64 - 1  # a Redis stream id's sequence part is an unsigned 64-bit integer
MAX_LENGTH = 4000  # characters: well within a header line every server and proxy takes
VERSION = "v1"

_PLAIN = re.compile(r"(\d{1,18})(?:-(\d{1,20}))?")
_CURSOR = re.compile(
    r"v1\.([0-9a-f]{8})\.([0-9a-f]{1,12})(?:-([0-9a-f]{1,16}))?"
    r"((?:\.[0-9a-f]{1,6}_[0-9a-f]{1,12}(?:-[0-9a-f]{1,16})?)*)"
)
_ENTRY = re.compile(r"\.([0-9a-f]{1,6})_([0-9a-f]{1,12})(?:-([0-9a-f]{1,16}))?")


class BadCursor(ValueError):
    """A Last-Event-ID that is no id this stream sends."""


def fingerprint(stream_keys: Sequence[str]) -> str:
    """The fingerprint of a subscription's streams, in order."""
    return f"{zlib.crc32(chr(10).join(stream_keys).encode()):08x}"


def _after(pos: Pos) -> Pos:
    ms, seq = pos
    return (ms, seq + 1) if seq < MAX_SEQ else (ms + 1, 0)


def _before(pos: Pos) -> Pos:
    ms, seq = pos
    if seq > 0:
        return ms, seq - 1
    return (ms - 1, MAX_SEQ) if ms > 0 else (0, 0)


class Cursor:
    """Where a subscription stands in each of its streams: the last id handled per stream
    (sent, or known to precede the subscription), and the id to send with the next event."""

    __slots__ = ("_head", "_order", "_parts", "base", "base_ms", "fp", "plain", "positions", "size")

    def __init__(self, stream_keys: Sequence[str], base: Pos) -> None:
        self.size = len(stream_keys)
        self.plain = self.size == 1  # one stream: its own ids, as they always were
        self.fp = fingerprint(stream_keys)
        self.base = base  # the last id handled on every stream without an entry
        self.positions: dict[int, Pos] = {}  # the others' (always above base)
        self._order: list[int] = []  # their indexes, ascending
        self._parts: list[str] = []  # their entries' text, in the same order
        first = _after(base)
        self.base_ms = first[0]
        text = f"{first[0]:x}" if first[1] == 0 else f"{first[0]:x}-{first[1]:x}"
        self._head = f"{VERSION}.{self.fp}.{text}"

    def position(self, index: int) -> Pos:
        """The last id handled on the index-th stream."""
        return self.positions.get(index, self.base)

    def advance(self, index: int, pos: Pos) -> None:
        """Record the index-th stream's event ``pos`` as handled (it is above its position)."""
        if pos <= self.base:
            return
        new = index not in self.positions
        self.positions[index] = pos
        if self.plain:
            return
        ms, seq = pos
        part = f".{index:x}_{ms - self.base_ms:x}"
        if seq:
            part += f"-{seq:x}"
        k = bisect.bisect_left(self._order, index)
        if new:
            self._order.insert(k, index)
            self._parts.insert(k, part)
        else:
            self._parts[k] = part

    def text(self, plain_id: str = "") -> str:
        """The id of the event just advanced (``plain_id``: its stream's own, sent as is by a
        one-stream subscription)."""
        if self.plain:
            return plain_id or f"{self.base[0]}-{self.base[1]}"
        text = self._head + "".join(self._parts)
        while len(text) > MAX_LENGTH:
            # Too many streams to name: forget the one furthest behind. A resume then sends
            # its events from the base on: some twice, none missed.
            k = min(range(len(self._order)), key=lambda j: self.positions[self._order[j]])
            del self.positions[self._order[k]], self._order[k], self._parts[k]
            text = self._head + "".join(self._parts)
        return text


def parse(value: str, stream_keys: Sequence[str]) -> Cursor:
    """A Last-Event-ID as the cursor it names for these streams; :class:`BadCursor` when it is
    neither a plain ``<ms>-<seq>`` nor a well-formed cursor.

    A plain id applies to every stream. A cursor of other streams (another subscription, or
    the operations' configuration changed) applies its base to every stream.
    """
    value = value.strip()
    if len(value) > MAX_LENGTH:
        raise BadCursor("too long")
    plain = _PLAIN.fullmatch(value)
    if plain is not None:
        seq = int(plain[2] or 0)
        if seq > MAX_SEQ:
            raise BadCursor("sequence out of range")
        return Cursor(stream_keys, (int(plain[1]), seq))
    match = _CURSOR.fullmatch(value)
    if match is None:
        raise BadCursor("malformed")
    fp, base_ms, base_seq, rest = match[1], int(match[2], 16), int(match[3] or "0", 16), match[4]
    first = (base_ms, base_seq)
    cursor = Cursor(stream_keys, _before(first))
    entries: list[tuple[int, Pos]] = []
    for entry in _ENTRY.finditer(rest):
        index, dms, seq = int(entry[1], 16), int(entry[2], 16), int(entry[3] or "0", 16)
        if entries and index <= entries[-1][0]:
            raise BadCursor("stream indexes out of order")
        pos = (base_ms + dms, seq)
        if pos < first:
            raise BadCursor("an entry below the base")
        entries.append((index, pos))
    if fp != cursor.fp:
        return cursor  # another subscription's: its base on every stream
    for index, pos in entries:
        if index >= cursor.size:
            raise BadCursor("no such stream")
        cursor.advance(index, pos)
    return cursor


def fresh(stream_keys: Sequence[str], now_ms: int, lasts: Sequence[Pos | None]) -> Cursor:
    """The cursor of a subscription opening now: every stream handled up to the ids it holds
    (``lasts``) and its node's clock (``now_ms``: the lowest of the nodes'), so what it keeps
    from now on is above."""
    cursor = Cursor(stream_keys, (now_ms - 1, MAX_SEQ) if now_ms > 0 else (0, 0))
    for index, last in enumerate(lasts):
        if last is not None:
            cursor.advance(index, last)
    return cursor
