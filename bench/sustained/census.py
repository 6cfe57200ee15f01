"""What Redis holds, by key shape: how many keys of each shape and the memory they use.

    .venv/bin/python bench/sustained/census.py redis://127.0.0.1:PORT

A key's shape is the key with its ids replaced (a request id, a delivery id, an idempotency
hash: any segment after the first three holding a digit and at least 8 characters, or a
64-bit number), so ``acceptd:{echo}:r:<id>`` counts every record. Memory is ``MEMORY USAGE``
(``SAMPLES 0`` for the few large keys, so a stream or list is measured whole), the key's own
overhead included. The soak takes one after its warm-up, one at the end of the load and one
after the drain, and prints what grew.
"""

from __future__ import annotations

import asyncio
import re
import sys
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aredis

SCAN_COUNT = 2000
# A segment that is an id: 8 or more characters with a digit, not a name of the data model.
_ID = re.compile(r"^(?=.*\d)[A-Za-z0-9_\-.=+/]{8,}$")


@dataclass
class Shape:
    kind: str
    keys: int = 0
    bytes: int = 0
    largest: int = 0  # bytes of its largest key
    length: int = 0  # of its largest key: entries (stream, list, zset, set, hash), else 0


def shape_of(key: str) -> str:
    parts = key.split(":")
    return ":".join(p if i < 2 or not _ID.match(p) else "<id>" for i, p in enumerate(parts))


async def census(r: aredis.Redis) -> dict[str, Shape]:
    """Every key's shape, count and memory (a few hundred ms per 100,000 keys)."""
    out: dict[str, Shape] = {}
    cursor: int | str = 0
    while True:
        cursor, batch = await r.scan(cursor=int(cursor), count=SCAN_COUNT)
        if batch:
            async with r.pipeline(transaction=False) as pipe:
                for k in batch:
                    pipe.type(k)
                    pipe.memory_usage(k, samples=0)
                got: list[Any] = await pipe.execute(raise_on_error=False)
            for i, k in enumerate(batch):
                kind, used = got[2 * i], got[2 * i + 1]
                if isinstance(kind, Exception) or isinstance(used, Exception) or used is None:
                    continue  # expired meanwhile
                name = shape_of(k.decode(errors="replace"))
                s = out.setdefault(name, Shape(_s(kind)))
                s.keys += 1
                s.bytes += int(used)
                if int(used) > s.largest:
                    s.largest = int(used)
                    s.length = await _length(r, k, s.kind)
        if int(cursor) == 0:
            return out


async def _length(r: aredis.Redis, key: bytes, kind: str) -> int:
    cmd = {"stream": "XLEN", "list": "LLEN", "zset": "ZCARD", "set": "SCARD", "hash": "HLEN"}
    if kind not in cmd:
        return 0
    return int(await r.execute_command(cmd[kind], key) or 0)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


async def memory_info(r: aredis.Redis) -> dict[str, Any]:
    """The ``INFO memory`` and persistence fields that explain RSS against used_memory."""
    info: dict[str, Any] = await r.info("memory")
    info.update(await r.info("persistence"))
    names = (
        "used_memory", "used_memory_rss", "used_memory_peak", "mem_fragmentation_ratio",
        "allocator_frag_ratio", "allocator_rss_ratio", "rss_overhead_ratio", "mem_aof_buffer",
        "mem_clients_normal", "mem_replication_backlog", "aof_current_size", "aof_base_size",
        "aof_rewrites", "allocator_allocated", "allocator_active", "allocator_resident",
    )  # fmt: skip
    return {n: info[n] for n in names if n in info}


def table(snaps: list[tuple[str, dict[str, Shape]]], top: int = 25) -> str:
    """Shapes side by side (keys and MiB per snapshot), largest last-snapshot first."""
    names = sorted(
        {n for _, s in snaps for n in s},
        key=lambda n: -max(s[n].bytes if n in s else 0 for _, s in snaps),
    )[:top]
    head = "| key shape | type | " + " | ".join(f"{t}: keys | {t}: MiB" for t, _ in snaps)
    head += " | largest (entries) |"
    out = [head, "|---|---|" + "---:|---:|" * len(snaps) + "---:|"]
    for n in names:
        kind = next(s[n].kind for _, s in snaps if n in s)
        cells = []
        for _, s in snaps:
            x = s.get(n)
            cells += [f"{x.keys:,}" if x else "0", f"{x.bytes / 2**20:,.2f}" if x else "0"]
        big = max((s[n] for _, s in snaps if n in s), key=lambda x: x.largest)
        cells.append(f"{big.largest / 2**10:,.0f} KiB ({big.length:,})")
        out.append(f"| `{n}` | {kind} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def info_table(snaps: list[tuple[str, dict[str, Any]]]) -> str:
    """``INFO memory`` fields side by side."""
    names = list(dict.fromkeys(n for _, info in snaps for n in info))
    out = ["| INFO | " + " | ".join(t for t, _ in snaps) + " |", "|---|" + "---:|" * len(snaps)]
    for n in names:
        cells = []
        for _, info in snaps:
            v = info.get(n, "")
            is_bytes = isinstance(v, int) and ("mem" in n or "size" in n or "alloc" in n)
            cells.append(f"{v / 2**20:,.1f} MiB" if is_bytes else str(v))
        out.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(out)


async def _main(url: str) -> None:
    r = aredis.Redis.from_url(url)
    try:
        snap = await census(r)
        print(table([("now", snap)], top=60))
        print()
        print(info_table([("now", await memory_info(r))]))
    finally:
        await r.aclose()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1]))
