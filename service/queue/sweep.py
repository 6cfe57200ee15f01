"""The listing indexes' sweep: ids whose records expired leave their client's index.

A client's index (:func:`service.queue.keys.client_index`, scored by creation ms) gets an id on
every submit, but a record expires ``result_ttl`` after it finishes, and nothing on the submit,
claim or finish paths removes its id (that would cost them work). The API's once-a-second
ticker runs :meth:`IndexSweeper.sweep` instead: for each index, it reads the oldest ids created
more than ``result_ttl`` ago (a record created later cannot have expired), checks which records
still exist (pipelined ``EXISTS``, all in the index's slot) and removes the others with one
single-key ``ZREM``. An index therefore holds what still exists plus about a tick of ids.

A per-index cursor (a creation score) lets the sweep step past old ids that are still live
(long-queued or running requests) rather than rereading them every tick; it starts again from
the oldest once it reaches the cutoff. A tick reads at most ``budget`` ids over at most
``max_indexes`` indexes (taken in rotation). Several processes may sweep the same index: a
removed id's record is gone for good (ids are never reused), so the sweep is idempotent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from service.queue import keys
from service.runtime.redis import Client

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
        redis: Client,
        tags: Mapping[str, Sequence[str]],
        result_ttls: Mapping[str, int],
        clients: Iterable[str],
        clock: Callable[[], float] = time.time,
        *,
        batch: int = BATCH,
        budget: int = BUDGET,
        max_indexes: int = MAX_INDEXES,
    ) -> None:
        """``tags``: each operation's shard tags; ``result_ttls``: its result_ttl in seconds."""
        self.redis = redis
        self.clock = clock
        self.batch, self.budget, self.max_indexes = batch, budget, max_indexes
        names = list(dict.fromkeys(clients))
        self.indexes = [
            _Index(keys.client_index(tag, client), tag, result_ttls[op] * 1000)
            for op, op_tags in tags.items()
            for tag in op_tags
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
        now = int(self.clock() * 1000)
        active = self._pick()
        budget, removed = self.budget, 0
        while active and budget > 0:
            num = max(1, min(self.batch, budget // len(active)))
            async with self.redis.pipeline(transaction=False) as pipe:
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
            gone = await self._gone(active, rows)
            removed += sum(len(g) for g in gone)
            active = [
                ix
                for ix, r, g in zip(active, rows, gone, strict=True)
                if self._advance(ix, r, g, num)
            ]
        return removed

    async def _gone(
        self, indexes: Sequence[_Index], rows: Sequence[Sequence[tuple[bytes, float]]]
    ) -> list[list[bytes]]:
        # Which of the ids read have no record any more; those are removed from their index.
        out: list[list[bytes]] = [[] for _ in indexes]
        if not any(rows):
            return out
        async with self.redis.pipeline(transaction=False) as pipe:
            for ix, r in zip(indexes, rows, strict=True):
                for member, _ in r:
                    pipe.exists(keys.record(ix.tag, member.decode()))
            found: list[Any] = await pipe.execute()
        flags = iter(found)
        for i, r in enumerate(rows):
            out[i] = [member for member, _ in r if not next(flags)]
        if any(out):
            async with self.redis.pipeline(transaction=False) as pipe:
                for ix, g in zip(indexes, out, strict=True):
                    if g:
                        pipe.zrem(ix.key, *g)
                await pipe.execute()
        return out

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
