"""The chaos test's client side: steady submits that retry like a careful client, and tallies.

Every submit carries an ``Idempotency-Key`` and is retried, on a refused or dropped connection
against the other API process and on 503 after its ``Retry-After``, until it is accepted. Each
answer is classified; anything but a 2xx, a 503 with ``Retry-After``, a refused connection or a
connection dropped by an API process killed meanwhile is a violation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.support.webhooks import Received

# Each attempt is bounded: a hang is a violation, not a slow test.
ATTEMPT_TIMEOUT = aiohttp.ClientTimeout(total=5)
# A client gives up on a submit after this long (both APIs down that long is a failure).
GIVE_UP_SECONDS = 30.0
TERMINAL_EVENTS = ("request.succeeded", "request.failed", "request.canceled")


@dataclass(frozen=True)
class Plan:
    """How much chaos: rounds of faults, the submit rate and the pause between faults."""

    rounds: int = 1
    rate: float = 12.0
    gap: float = 1.5
    outage: float = 1.0
    workers: int = 2
    concurrency: int = 8
    handler_seconds: float = 0.3

    @classmethod
    def from_env(cls) -> Plan:
        """The short plan, or a longer one from ``CHAOS_ROUNDS``, ``CHAOS_RATE``, ``CHAOS_GAP``."""
        return cls(
            rounds=int(os.environ.get("CHAOS_ROUNDS", "1")),
            rate=float(os.environ.get("CHAOS_RATE", "12")),
            gap=float(os.environ.get("CHAOS_GAP", "1.5")),
        )

    @property
    def timeout(self) -> float:
        """The test's time limit: generous, as the machine may be loaded."""
        return 150.0 + 60.0 * self.rounds


class Apis:
    """The API processes' base URLs, and a generation per API bumped when it is killed."""

    def __init__(self, bases: list[str]) -> None:
        self.bases = bases
        self.generation = [0] * len(bases)

    def killed(self, index: int) -> None:
        """Record that API ``index`` is being killed (before the signal is sent)."""
        self.generation[index] += 1


@dataclass
class Tally:
    """Every answer the submitters got, and what each idempotency key was accepted as."""

    answers: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    accepted: dict[str, set[str]] = field(default_factory=dict)
    # When (time.monotonic()) each request id's 202 arrived.
    accepted_at: dict[str, float] = field(default_factory=dict)
    submitted: int = 0
    replays: int = 0
    given_up: list[str] = field(default_factory=list)

    def ids(self) -> set[str]:
        """Every accepted request id."""
        return {rid for ids in self.accepted.values() for rid in ids}


def _is_unavailable(status: int, headers: Any) -> bool:
    try:
        return status == 503 and int(headers.get("Retry-After", "0")) >= 1
    except ValueError:
        return False


async def submit_until_accepted(
    session: aiohttp.ClientSession,
    apis: Apis,
    tally: Tally,
    n: int,
    body: dict[str, Any],
) -> None:
    """Submit request ``n`` (key ``chaos-<n>``) until an API accepts it; record every answer."""
    key = f"chaos-{n}"
    headers = {"Prefer": "respond-async", "Idempotency-Key": key}
    index = n % len(apis.bases)
    deadline = time.monotonic() + GIVE_UP_SECONDS
    backoff = 0.05
    while time.monotonic() < deadline:
        generation = apis.generation[index]
        delay = backoff
        try:
            async with session.post(
                f"{apis.bases[index]}/v1/sleep", json=body, headers=headers, timeout=ATTEMPT_TIMEOUT
            ) as resp:
                payload = await resp.read()
                if 200 <= resp.status < 300:
                    tally.answers["2xx"] += 1
                    tally.replays += resp.headers.get("Idempotent-Replayed") == "true"
                    rid = str(json.loads(payload)["id"])
                    tally.accepted.setdefault(key, set()).add(rid)
                    tally.accepted_at.setdefault(rid, time.monotonic())
                    return
                if _is_unavailable(resp.status, resp.headers):
                    tally.answers["503"] += 1
                    delay = float(resp.headers["Retry-After"])
                else:
                    tally.answers["other"] += 1
                    tally.violations.append(f"{key}: {resp.status} {payload[:200]!r}")
                    return
        except aiohttp.ClientConnectorError:
            tally.answers["refused"] += 1
            index = (index + 1) % len(apis.bases)
        except TimeoutError:
            tally.answers["other"] += 1
            tally.violations.append(f"{key}: no answer within {ATTEMPT_TIMEOUT.total} s")
            index = (index + 1) % len(apis.bases)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            # Only an API killed during this attempt may drop its connection.
            if apis.generation[index] == generation:
                tally.answers["other"] += 1
                tally.violations.append(f"{key}: dropped by a live API: {exc!r}")
            else:
                tally.answers["dropped"] += 1
            index = (index + 1) % len(apis.bases)
        backoff = min(backoff * 2, 1.0)
        await asyncio.sleep(delay)  # the client's retry delay, not synchronisation
    tally.given_up.append(key)


async def submit_steadily(
    session: aiohttp.ClientSession,
    apis: Apis,
    tally: Tally,
    plan: Plan,
    stop: asyncio.Event,
) -> list[asyncio.Task[None]]:
    """Start one submitter every ``1 / rate`` seconds (open loop) until ``stop``; their tasks."""
    tasks: list[asyncio.Task[None]] = []
    started = time.monotonic()
    body = {"seconds": plan.handler_seconds, "steps": 2}
    while not stop.is_set():
        n = len(tasks)
        tally.submitted += 1
        tasks.append(asyncio.create_task(submit_until_accepted(session, apis, tally, n, body)))
        next_at = started + (n + 1) / plan.rate
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
    return tasks


class Deliveries:
    """The verified terminal webhooks a receiver got, per request id (read incrementally)."""

    def __init__(self, received: list[Received], secret: str) -> None:
        self._received = received
        self._secret = secret
        self._seen = 0
        self.by_id: Counter[str] = Counter()
        self.types: dict[str, str] = {}
        self.webhook_ids: Counter[str] = Counter()

    def update(self) -> None:
        """Verify and count what arrived since the last call (a bad signature raises)."""
        for item in self._received[self._seen :]:
            body = item.verify(self._secret)
            if body["type"] in TERMINAL_EVENTS:
                rid = str(body["data"]["id"])
                self.by_id[rid] += 1
                self.types[rid] = str(body["type"])
                self.webhook_ids[item.webhook_id] += 1
        self._seen = len(self._received)

    def covers(self, ids: set[str]) -> bool:
        """Whether every id in ``ids`` got a terminal webhook."""
        self.update()
        return all(rid in self.by_id for rid in ids)

    @property
    def duplicates(self) -> int:
        """Deliveries beyond the first per request."""
        return sum(n - 1 for n in self.by_id.values())


def handler_runs(path: str) -> Counter[str]:
    """Runs per request id, from ``counted_sleep``'s log."""
    runs: Counter[str] = Counter()
    try:
        with open(path) as log:
            for line in log:
                runs[line.split(" ", 1)[0]] += 1
    except FileNotFoundError:
        pass
    return runs
