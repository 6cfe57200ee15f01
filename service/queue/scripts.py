"""The queue's Lua scripts (``lua/*.lua``) and the typed KEYS and ARGV each is called with.

Each multi-key state transition is one atomic script. A script's header names its KEYS and
ARGV; the NamedTuples here list the same names in the same order, and :class:`Lua` refuses
to load a script whose header and caller differ. Times come from the caller (milliseconds),
so tests can control the clock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from service.runtime.lua import Lua

DIRECTORY = Path(__file__).with_name("lua")


class SubmitKeys(NamedTuple):
    """The submit script's fixed KEYS (one operation's)."""

    pending: str
    seq: str
    idle: str
    running: str
    wake: str
    hand: str
    outbox: str
    hooked_running: str
    deadlines: str
    hist_s: str
    hist_m: str


class SubmitArgv(NamedTuple):
    """The submit script's fixed ARGV: the operation's channels and limits (sent once per
    merged call, not once per submit)."""

    events_channel: str
    watched_channel: str
    idem_ttl: str
    arrival: str
    max_depth: str
    attempts: str
    timeout_ms: str
    result_ttl: str
    backoff_ms: str


class SubmitCallKeys(NamedTuple):
    """The KEYS of one submit in a merged call."""

    record: str
    client_index: str
    idempotency: str
    rate: str
    glob: str
    cev: str


class SubmitCallArgv(NamedTuple):
    """The ARGV of one submit in a merged call."""

    id: str
    client: str
    priority: int
    input: str
    now: int
    options: str


class ReplayKeys(NamedTuple):
    """The replay script's KEYS."""

    idempotency: str
    record: str
    pending: str


class ReplayArgv(NamedTuple):
    """The replay script's ARGV."""

    id: str
    member: str
    body_hash: str
    wait: str


class ClaimKeys(NamedTuple):
    """The claim script's KEYS."""

    pending: str
    delayed: str
    running: str
    workers: str
    idle: str
    wake: str
    hand: str
    signal: str
    deadlines: str


class ClaimArgv(NamedTuple):
    """The claim script's ARGV."""

    now: int
    lease_ms: int
    worker: str
    max_jobs: int
    worker_ttl_ms: int
    idle_ms: int
    recover: str
    max_score: str = ""


class StartKeys(NamedTuple):
    """The start script's fixed KEYS (one operation's)."""

    running: str
    outbox: str
    hooked_running: str
    hooked_failed: str
    deadlines: str
    pending: str
    hist_s: str
    hist_m: str


class StartArgv(NamedTuple):
    """The start script's fixed ARGV (one claim's)."""

    token: str
    worker: str
    now: int
    events_channel: str
    watched_channel: str


class StartCallKeys(NamedTuple):
    """The KEYS of one start in a merged call."""

    record: str
    ev: str
    glob: str
    cev: str


class StartCallArgv(NamedTuple):
    """The ARGV of one start in a merged call."""

    member: str


class RecoverKeys(NamedTuple):
    """The recover script's KEYS."""

    record: str
    ev: str
    glob: str
    cev: str
    running: str
    pending: str
    hand: str
    wake: str
    tput: str
    outbox: str
    hooked_running: str
    hooked_failed: str
    hooked_canceled: str
    deadlines: str
    hist_s: str
    hist_m: str


class RecoverArgv(NamedTuple):
    """The recover script's ARGV."""

    id: str
    member: str
    now: int
    events_channel: str
    watched_channel: str
    token: str
    worker: str
    lease_ms: int
    take: str
    max_lost: int


class ExpireKeys(NamedTuple):
    """The expire script's fixed KEYS (one operation's)."""

    deadlines: str
    pending: str
    outbox: str
    hooked_failed: str
    hist_s: str
    hist_m: str


class ExpireArgv(NamedTuple):
    """The expire script's fixed ARGV."""

    now: int
    events_channel: str
    watched_channel: str


class ExpireCallKeys(NamedTuple):
    """The KEYS of one expiry in a merged call."""

    record: str
    ev: str
    glob: str
    cev: str


class ExpireCallArgv(NamedTuple):
    """The ARGV of one expiry in a merged call."""

    member: str


class ForgetKeys(NamedTuple):
    """The forget script's fixed KEYS."""

    client_index: str


class ForgetArgv(NamedTuple):
    """The forget script's fixed ARGV."""

    cutoff: int


class ForgetCallKeys(NamedTuple):
    """The KEYS of one id the forget script checks."""

    record: str


class ForgetCallArgv(NamedTuple):
    """The ARGV of one id the forget script checks."""

    id: str


class PromoteKeys(NamedTuple):
    """The promote script's KEYS."""

    record: str
    delayed: str
    pending: str
    wake: str


class PromoteArgv(NamedTuple):
    """The promote script's ARGV."""

    member: str
    now: int


class UpgradeKeys(NamedTuple):
    """The upgrade script's KEYS."""

    set: str


class UpgradeArgv(NamedTuple):
    """The upgrade script's ARGV."""

    bare: str
    member: str


class UnidleKeys(NamedTuple):
    """The unidle script's KEYS."""

    idle: str
    hand: str
    signal: str


class UnidleArgv(NamedTuple):
    """The unidle script's ARGV."""

    worker: str
    lease_ms: int
    wake_now: str


class RenewKeys(NamedTuple):
    """The renew script's KEYS."""

    record: str
    running: str


class RenewArgv(NamedTuple):
    """The renew script's ARGV."""

    member: str
    token: str
    now: int
    lease_ms: int


class ProgressKeys(NamedTuple):
    """The progress script's KEYS."""

    record: str
    ev: str
    glob: str
    cev: str


class ProgressArgv(NamedTuple):
    """The progress script's ARGV."""

    token: str
    now: int
    progress: str
    events_channel: str
    watched_channel: str


class FinishKeys(NamedTuple):
    """The finish script's fixed KEYS."""

    running: str
    delayed: str
    wake: str
    tput: str
    outbox: str
    hooked_succeeded: str
    hooked_failed: str
    hooked_canceled: str
    pending: str
    hist_s: str
    hist_m: str
    idle: str


class FinishArgv(NamedTuple):
    """The finish script's fixed ARGV."""

    events_channel: str
    watched_channel: str
    idle_entry: str = ""
    idle_until: int = 0
    max_attempts: int = 1


class FinishCallKeys(NamedTuple):
    """The KEYS of one finish in a merged finish call."""

    record: str
    ev: str
    glob: str
    cev: str


class FinishCallArgv(NamedTuple):
    """The ARGV of one finish in a merged finish call."""

    id: str
    token: str
    now: int
    outcome: str
    payload: str
    retry_delay_ms: int


class ReleaseKeys(NamedTuple):
    """The release script's KEYS."""

    record: str
    ev: str
    glob: str
    cev: str
    running: str
    pending: str
    wake: str


class ReleaseArgv(NamedTuple):
    """The release script's ARGV."""

    id: str
    token: str
    now: int
    events_channel: str
    watched_channel: str


class CancelKeys(NamedTuple):
    """The cancel script's KEYS."""

    record: str
    ev: str
    glob: str
    cev: str
    pending: str
    delayed: str
    outbox: str
    hooked_canceled: str
    hist_s: str
    hist_m: str


class CancelArgv(NamedTuple):
    """The cancel script's ARGV."""

    id: str
    client: str
    now: int
    error_json: str
    events_channel: str
    watched_channel: str
    control_channel: str


class ReadKeys(NamedTuple):
    """The read script's KEYS."""

    record: str
    ev: str
    pending: str
    tput: str
    running: str


class ReadArgv(NamedTuple):
    """The read script's ARGV."""

    now: int
    with_result: str
    watch_client: str


class AheadKeys(NamedTuple):
    """The ahead script's KEYS."""

    pending: str
    tput: str


class AheadArgv(NamedTuple):
    """The ahead script's ARGV."""

    max_score: str
    now: int


class FollowKeys(NamedTuple):
    """The follow script's KEYS: one client's stream of one operation (shard)."""

    glob: str
    cev: str


class FollowArgv(NamedTuple):
    """The follow script's ARGV."""

    ttl: int
    keep_ms: int


class StatsKeys(NamedTuple):
    """The stats script's KEYS."""

    pending: str
    delayed: str
    running: str
    workers: str
    tput: str


class StatsArgv(NamedTuple):
    """The stats script's ARGV."""

    now: int


SUBMIT = Lua(
    DIRECTORY,
    "submit",
    SubmitKeys,
    SubmitArgv,
    call_keys=SubmitCallKeys,
    call_argv=SubmitCallArgv,
)
REPLAY = Lua(DIRECTORY, "replay", ReplayKeys, ReplayArgv)
CLAIM = Lua(DIRECTORY, "claim", ClaimKeys, ClaimArgv)
START = Lua(
    DIRECTORY,
    "start",
    StartKeys,
    StartArgv,
    call_keys=StartCallKeys,
    call_argv=StartCallArgv,
)
RECOVER = Lua(DIRECTORY, "recover", RecoverKeys, RecoverArgv)
EXPIRE = Lua(
    DIRECTORY,
    "expire",
    ExpireKeys,
    ExpireArgv,
    call_keys=ExpireCallKeys,
    call_argv=ExpireCallArgv,
)
FORGET = Lua(
    DIRECTORY,
    "forget",
    ForgetKeys,
    ForgetArgv,
    call_keys=ForgetCallKeys,
    call_argv=ForgetCallArgv,
)
PROMOTE = Lua(DIRECTORY, "promote", PromoteKeys, PromoteArgv)
UPGRADE = Lua(DIRECTORY, "upgrade", UpgradeKeys, UpgradeArgv)
UNIDLE = Lua(DIRECTORY, "unidle", UnidleKeys, UnidleArgv)
RENEW = Lua(DIRECTORY, "renew", RenewKeys, RenewArgv)
PROGRESS = Lua(DIRECTORY, "progress", ProgressKeys, ProgressArgv)
FINISH = Lua(
    DIRECTORY,
    "finish",
    FinishKeys,
    FinishArgv,
    call_keys=FinishCallKeys,
    call_argv=FinishCallArgv,
)
RELEASE = Lua(DIRECTORY, "release", ReleaseKeys, ReleaseArgv)
CANCEL = Lua(DIRECTORY, "cancel", CancelKeys, CancelArgv)
READ = Lua(DIRECTORY, "read", ReadKeys, ReadArgv)
STATS = Lua(DIRECTORY, "stats", StatsKeys, StatsArgv)
AHEAD = Lua(DIRECTORY, "ahead", AheadKeys, AheadArgv)
FOLLOW = Lua(DIRECTORY, "follow", FollowKeys, FollowArgv)

ALL: dict[str, Lua[Any, Any]] = {
    lua.name: lua
    for lua in (
        SUBMIT,
        REPLAY,
        CLAIM,
        START,
        RECOVER,
        EXPIRE,
        FORGET,
        PROMOTE,
        UPGRADE,
        UNIDLE,
        RENEW,
        PROGRESS,
        FINISH,
        RELEASE,
        CANCEL,
        READ,
        STATS,
        AHEAD,
        FOLLOW,
    )
}
