"""The server's Function libraries of other releases: deleted when a process of this one starts.

Each script is one library named after its text (``acceptd_<package>_<script>_<hash>``, see
:class:`~service.runtime.batcher.Script`), so a release whose scripts changed loads new ones
and the old ones stay behind. The worker (queue scripts) and the dispatcher (webhook scripts)
delete their package's libraries that are not this release's as they start. A process of
another release still running during a rolling deploy loses nothing: its next call is answered
"Function not found", and the batcher loads its library again and resends (one round trip).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from redis.asyncio import RedisCluster
from redis.exceptions import RedisError, ResponseError

from service.runtime.batcher import Script, without_functions
from service.runtime.cluster import sharded
from service.runtime.redis import Client

log = logging.getLogger(__name__)


def names(scripts: Iterable[Script]) -> set[str]:
    """The function names of ``scripts`` as one server runs them and as a cluster does."""
    found: set[str] = set()
    for script in scripts:
        for form in (script, script.edited(sharded)):
            if form.function is not None:
                found.add(form.function)
    return found


async def drop_other_releases(redis: Client, scripts: Iterable[Script], package: str) -> list[str]:
    """Delete the libraries of ``package`` (``acceptd_<package>_…``) on the server, or on every
    master of a cluster, that are none of ``scripts``; their names. Best effort, as a process
    starts: a failure is logged (the next start tries again) and deletes nothing more."""
    try:
        return await _drop(redis, scripts, package)
    except RedisError as exc:
        log.warning("could not delete other releases' function libraries: %s", exc)
        return []


async def _drop(redis: Client, scripts: Iterable[Script], package: str) -> list[str]:
    prefix, keep = f"acceptd_{package}_", names(scripts)
    dropped: list[str] = []
    targets: list[Any] = [None]
    if isinstance(redis, RedisCluster):
        await redis.initialize()  # the slot map, hence the masters, once known
        targets = redis.get_primaries()
    for node in targets:
        at: dict[str, Any] = {"target_nodes": node} if node is not None else {}
        try:
            listed = await redis.execute_command("FUNCTION", "LIST", **at)
        except ResponseError as exc:
            if without_functions(exc):
                return []  # Redis before 7.0: the scripts run by SHA, nothing is left behind
            raise
        for library in listed or ():
            name = _name(library)
            if name.startswith(prefix) and name not in keep:
                await redis.execute_command("FUNCTION", "DELETE", name, **at)
                dropped.append(name)
    if dropped:
        log.info("deleted %d function libraries of other releases", len(dropped))
    return dropped


def _name(library: Any) -> str:
    # One entry of FUNCTION LIST: a map (redis-py's reply callback) or its flat list, its keys
    # bytes or str (a client that decodes replies).
    if not isinstance(library, dict):
        library = dict(zip(library[::2], library[1::2], strict=True))
    value = library.get(b"library_name", library.get("library_name"))
    return value.decode() if isinstance(value, bytes) else str(value)
