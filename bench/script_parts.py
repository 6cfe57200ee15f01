"""Where a one-request ``submit.lua`` run's server time goes: the script with parts cut out.

    .venv/bin/python bench/script_parts.py [N] [ROUNDS]

Against a private valkey-server (no persistence), N (4,000) single-request submits per variant,
sent 50 to a pipeline (server time from ``INFO commandstats``, so the client's speed does not
count), variants interleaved for ROUNDS (5) rounds; it prints each variant's median µs per run.
The variants are the real script (``service/queue/scripts.py``'s source, includes expanded)
with parts removed, so each difference is what that part costs a run:

- ``noop``: an EVALSHA of ``return 1`` (the command's own cost);
- ``prologue``: the script returning right before its first call: its locals and the ~30
  functions its includes define, built again on every run;
- ``-history``, ``-emit``, ``-wake+trim``: without the console history, the event, the wake-up
  and the client index trim (cumulative);
- ``minimal``: only the INCR, HSET, two ZADDs and ZCARD a queued request needs.

Every run is a new request queued behind the earlier ones (no idle worker registered).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from ab import free_port, valkey_binary, wait_port

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from service.queue import scripts

E = "acceptd:{echo}:"
NAMES = ("pending", "seq", "idle", "running", "wake", "hand", "outbox", "hooked:running",
         "deadlines", "hist:s", "hist:m")  # fmt: skip
FIXED_KEYS = [E + k for k in NAMES]
FIXED_ARGV = [E + "events", E + "watched", "86400", "", "100000", "1", "10000", "3600", "1000"]
SOURCE = scripts.SUBMIT.source
HISTORY = [("history_flush(pending, run_depth)  --", "--"), ("history(pending, 's', now)", "")]
EMIT = [("emit(rk, rec, 'status', 1)", "")]
WAKE_TRIM = [
    ("if queued then wake_workers() end", ""),
    ("redis.call('ZREMRANGEBYSCORE', rk.client_index, '-inf', cutoff)", ""),
]
PROLOGUE = [("\nlocal out = {}\n", "\ndo return {} end\nlocal out = {}\n")]
MINIMAL = """local n = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[12], 'id', ARGV[10], 'client', ARGV[11], 'status', 'queued',
  'prio', '0', 'score', n, 'attempt', '1', 'max_att', '1', 'timeout', '10000', 'ttl', '3600',
  'backoff', '1000', 'created', ARGV[14], 'updated', ARGV[14], 'evseq', '1', 'input', ARGV[13])
redis.call('ZADD', KEYS[13], ARGV[14], ARGV[10])
redis.call('ZADD', KEYS[1], n, ARGV[10] .. '\\n' .. ARGV[11])
return {redis.call('ZCARD', KEYS[1]) - 1}"""


def variant(cuts: list[tuple[str, str]]) -> str:
    source = SOURCE
    for old, new in cuts:
        if old not in source:
            raise SystemExit(f"script_parts: submit.lua no longer has {old!r}")
        source = source.replace(old, new)
    return source


VARIANTS = {
    "noop": "return 1",
    "prologue": variant(PROLOGUE),
    "full": SOURCE,
    "-history": variant(HISTORY),
    "-history -emit": variant(HISTORY + EMIT),
    "-history -emit -wake+trim": variant(HISTORY + EMIT + WAKE_TRIM),
    "minimal": MINIMAL,
}


def call(i: int, now: int) -> tuple[list[str], list[str]]:
    rid = f"id{i:08d}"
    keys = [E + "r:" + rid] + [E + k + ":anonymous" for k in ("c", "idem", "rl", "glob", "cev")]
    # id, client, priority, input, now; of the options only that a caller waits (no
    # Idempotency-Key, callback, rate limit, Queue-Timeout or retry).
    return keys, [rid, "anonymous", "0", '{"hello":"world"}', str(now), '{"wait":true}']


def per_run(r: redis.Redis, source: str, n: int) -> float:
    r.flushall()
    sha = r.script_load(source)
    r.config_resetstat()
    now = int(time.time() * 1000)
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        keys, argv = call(i, now + i)
        pipe.evalsha(sha, len(FIXED_KEYS) + len(keys), *FIXED_KEYS, *keys, *FIXED_ARGV, *argv)
        if len(pipe) == 50:
            pipe.execute()
    pipe.execute()
    return float(r.info("commandstats")["cmdstat_evalsha"]["usec_per_call"])


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    port = free_port()
    server = subprocess.Popen(
        [valkey_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", tempfile.mkdtemp()],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_port(port)
        r = redis.Redis(port=port)
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for _ in range(rounds):
            for name, source in VARIANTS.items():
                times[name].append(per_run(r, source, n))
        for name, values in times.items():
            print(f"{name:28s} {statistics.median(values):6.1f} µs per run "
                  f"(rounds: {', '.join(f'{v:.1f}' for v in values)})")  # fmt: skip
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
