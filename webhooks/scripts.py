"""The webhook package's Lua scripts (``webhooks/lua/*.lua``) and the arguments they take.

Each multi-key state move is one atomic script. Its KEYS and ARGV are the NamedTuples below, in
the order the script's header names them (:class:`~service.runtime.lua.Lua` checks this when the
module is imported). Every key of one call is in one webhook partition (one Cluster slot, see
:mod:`webhooks.keys`); times (ms) come from the caller's clock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from service.runtime.lua import Lua

DIRECTORY = Path(__file__).parent / "lua"


class FanoutKeys(NamedTuple):
    """Fixed keys of ``fanout.lua``."""

    due: str
    inflight: str
    busy: str
    wake: str


class FanoutArgv(NamedTuple):
    """Fixed arguments of ``fanout.lua``."""

    now: int
    cap: int
    token: str
    deadline: int
    per_target: int
    slots: int
    request_cap: int
    request_ttl: int


class FanoutItemKeys(NamedTuple):
    """The keys of one delivery given to ``fanout.lua``."""

    delivery: str
    deliveries: str
    endpoint: str
    requested: str


class FanoutItemArgv(NamedTuple):
    """The arguments of one delivery given to ``fanout.lua``."""

    id: str
    target: str
    ep: str
    url: str
    client: str
    event_type: str
    op: str
    request_id: str
    payload: bytes


class ClaimKeys(NamedTuple):
    """Keys of ``claim.lua``."""

    due: str
    inflight: str
    busy: str


class ClaimArgv(NamedTuple):
    """Arguments of ``claim.lua``."""

    now: int
    max_items: int
    per_target: int
    busy_ms: int
    scan: int


class LeaseKeys(NamedTuple):
    """Keys of ``lease.lua``."""

    delivery: str
    endpoint: str
    due: str
    inflight: str
    busy: str


class LeaseArgv(NamedTuple):
    """Arguments of ``lease.lua``."""

    id: str
    member: str
    now: int
    deadline: int
    token: str
    per_target: int
    busy_ms: int


class StallKeys(NamedTuple):
    """Keys of ``stall.lua``."""

    delivery: str
    log: str
    due: str
    inflight: str
    busy: str


class StallArgv(NamedTuple):
    """Arguments of ``stall.lua``."""

    id: str
    now: int
    max_stalls: int
    retention: int
    lease_lost: str


class FinishKeys(NamedTuple):
    """Fixed keys of ``finish.lua`` (a partition's)."""

    inflight: str
    due: str
    busy: str


class FinishArgv(NamedTuple):
    """Fixed arguments of ``finish.lua`` (the same for every call: calls with equal ones merge)."""

    retention: int
    log_cap: int
    disable_after: int
    gone_reason: str
    stale_reason: str


class FinishCallKeys(NamedTuple):
    """The keys of one attempt given to ``finish.lua``."""

    delivery: str
    log: str
    endpoint: str


class FinishCallArgv(NamedTuple):
    """The arguments of one attempt given to ``finish.lua``."""

    id: str
    token: str
    now: int
    outcome: str
    attempt: bytes
    next_at: int | str


class RedeliverKeys(NamedTuple):
    """Keys of ``redeliver.lua``."""

    delivery: str
    log: str
    due: str
    wake: str


class RedeliverArgv(NamedTuple):
    """Arguments of ``redeliver.lua``."""

    id: str
    client: str
    now: int


class EnlistKeys(NamedTuple):
    """Keys of ``enlist.lua``."""

    endpoints: str


class EnlistArgv(NamedTuple):
    """Arguments of ``enlist.lua``."""

    cap: int
    id: str
    created: int


class RotateKeys(NamedTuple):
    """Keys of ``rotate.lua``."""

    endpoint: str


class RotateArgv(NamedTuple):
    """Arguments of ``rotate.lua``."""

    client: str
    secret: str
    old_until: int


FANOUT = Lua(
    DIRECTORY,
    "fanout",
    FanoutKeys,
    FanoutArgv,
    call_keys=FanoutItemKeys,
    call_argv=FanoutItemArgv,
)
CLAIM = Lua(DIRECTORY, "claim", ClaimKeys, ClaimArgv)
LEASE = Lua(DIRECTORY, "lease", LeaseKeys, LeaseArgv)
STALL = Lua(DIRECTORY, "stall", StallKeys, StallArgv)
FINISH = Lua(
    DIRECTORY,
    "finish",
    FinishKeys,
    FinishArgv,
    call_keys=FinishCallKeys,
    call_argv=FinishCallArgv,
)
REDELIVER = Lua(DIRECTORY, "redeliver", RedeliverKeys, RedeliverArgv)
ROTATE = Lua(DIRECTORY, "rotate", RotateKeys, RotateArgv)
ENLIST = Lua(DIRECTORY, "enlist", EnlistKeys, EnlistArgv)

_SCRIPTS: tuple[Lua[Any, Any], ...] = (
    FANOUT,
    CLAIM,
    LEASE,
    STALL,
    FINISH,
    REDELIVER,
    ROTATE,
    ENLIST,
)
ALL: dict[str, Lua[Any, Any]] = {lua.name: lua for lua in _SCRIPTS}
