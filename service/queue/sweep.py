"""The listing indexes' sweep: ids whose records expired leave their client's index.

A client's index (:func:`service.queue.keys.client_index`, scored by creation ms) gets an id on
every submit, but a record expires ``result_ttl`` after it finishes, and nothing on the submit,
claim or finish paths removes its id (that would cost them work). The API's once-a-second
ticker runs :meth:`IndexSweeper.sweep` instead: for each index, it reads the oldest ids created
more than ``result_ttl`` ago (a record created later cannot have expired), and one
``forget.lua`` run per index removes those whose records are gone (it checks them with
``EXISTS``: all in the index's slot). This process spends about 10 µs of CPU per id read,
the read included (a pipelined ``EXISTS`` and ``ZREM`` per id cost three times that), so a
tick's budget of 5,000 ids costs at most some 50 ms, in awaited steps of one read of 500. An
index therefore holds what still exists plus about a tick of ids.

A per-index cursor (a creation score) lets the sweep step past old ids that are still live
(long-queued or running requests) rather than rereading them every tick; it starts again from
the oldest once it reaches the cutoff. A tick reads at most ``budget`` ids over at most
``max_indexes`` indexes (taken in rotation). Several processes may sweep the same index: a
removed id's record is gone for good (ids are never reused), so the sweep is idempotent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from service.queue import keys, scripts
from service.queue.scripts import ForgetArgv, ForgetCallArgv, ForgetCallKeys, ForgetKeys
from service.queue.store import Queue

# Ids read from one index by one read; the ids a tick reads in all; indexes one tick visits.
BATCH = 500
BUDGET = 5000
MAX_INDEXES = 64


@dataclass(frozen=True, slots=True)
class _Index:
    key: str
    tag: str
    ttl_ms: int


class IndexSweeper:
    """Sweeps the listing indexes of the given clients on every shard of the given operations."""

    def __init__(
        self,
        queue: Queue,
        result_ttls: Mapping[str, int],
        clients: Iterable[str],
        *,
        batch: int = BATCH,
        budget: int = BUDGET,
        max_indexes: int = MAX_INDEXES,
    ) -> None:
        """``result_ttls``: each operation's result_ttl in seconds (every shard is swept)."""
        self.queue = queue
        self.batch, self.budget, self.max_indexes = batch, budget, max_indexes
        names = list(dict.fromkeys(clients))
        self.indexes = [
            _Index(keys.client_index(tag, client), tag, ttl * 1000)
            for op, ttl in result_ttls.items()
            for tag in queue.tags(op)
            for client in names
        ]
        # Index key -> where its next read starts: a creation score, and how many live ids of
        # that score to skip (absent: from the oldest).
        self.cursors: dict[str, tuple[int | None, int]] = {}
        self._next = 0

    def _pick(self) -> list[_Index]:
        # The next indexes in rotation, at most max_indexes of them.
        n = len(self.indexes)
        if n <= self.max_indexes:
            return list(self.indexes)
        start = self._next % n
        self._next = start + self.max_indexes
        return [self.indexes[(start + i) % n] for i in range(self.max_indexes)]

    async def sweep(self) -> int:
        """One tick's sweep; returns how many ids it removed."""
        now = self.queue.now_ms()
        active = self._pick()
        budget, removed = self.budget, 0
        while active and budget > 0:
            num = max(1, min(self.batch, budget // len(active)))
            async with self.queue.redis.pipeline(transaction=False) as pipe:
                for ix in active:
                    score, skip = self.cursors.get(ix.key, (None, 0))
                    pipe.zrangebyscore(
                        ix.key,
                        "-inf" if score is None else score,
                        now - ix.ttl_ms,
                        start=skip,
                        num=num,
                        withscores=True,
                    )
                rows: list[list[tuple[bytes, float]]] = await pipe.execute()
            budget -= sum(len(r) for r in rows)
            gone = await asyncio.gather(
                *(self._forget(ix, r, now) for ix, r in zip(active, rows, strict=True))
            )
            removed += sum(len(g) for g in gone)
            active = [
                ix
                for ix, r, g in zip(active, rows, gone, strict=True)
                if self._advance(ix, r, g, num)
            ]
        return removed

    async def _forget(
        self, ix: _Index, rows: Sequence[tuple[bytes, float]], now: int
    ) -> list[bytes]:
        # The ids read whose records are gone, now removed from the index (one script run).
        if not rows:
            return []
        ids = [member.decode() for member, _ in rows]
        flags: list[Any] = await scripts.FORGET.call_many(
            self.queue.batcher,
            ForgetKeys(ix.key),
            ForgetArgv(now - ix.ttl_ms),
            [(ForgetCallKeys(keys.record(ix.tag, rid)), ForgetCallArgv(rid)) for rid in ids],
        )
        return [member for (member, _), gone in zip(rows, flags, strict=True) if gone]

    def _advance(
        self, ix: _Index, rows: Sequence[tuple[bytes, float]], gone: Sequence[bytes], num: int
    ) -> bool:
        # Move the index's cursor past what was read; True while there may be more to read.
        if len(rows) < num:  # reached the cutoff: the next tick starts from the oldest again
            self.cursors.pop(ix.key, None)
            return False
        last = int(rows[-1][1])
        removed = set(gone)
        kept = sum(1 for member, score in rows if int(score) == last and member not in removed)
        start = self.cursors.get(ix.key)
        if start is not None and start[0] == last:
            kept += start[1]  # the live ids of that score skipped before, and these
        self.cursors[ix.key] = (last, kept)
        return True
