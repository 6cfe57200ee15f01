"""Lua scripts kept as ``.lua`` files, each with a header naming its KEYS and ARGV.

A script's header (its first block comment) lists every key and argument by name, in order::

    --[[ renew: extend a lease.
      KEYS[1] record     the request's hash
      KEYS[2] running    leases by deadline
      ARGV[1] id
      ARGV[2] token
      each call:
      KEYS[+1] ...       (scripts that take many calls at once: entries repeated per call)
      ARGV[+1] ...
    ]]

``--- @include "name"`` lines pull in shared helpers from the same folder (each once, BullMQ's
convention). The Python side of every script is a pair of NamedTuples whose field order *is*
the KEYS and ARGV order: :class:`Lua` checks them against the header when it is built, so a
script and its caller cannot drift apart silently.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

from service.runtime.batcher import Batcher, Script

_ENTRY = re.compile(r"^\s*(KEYS|ARGV)\[(\+?)(\d+)\]\s+([a-z_][a-z0-9_]*)\b", re.M)
_INCLUDE = re.compile(r'^--- @include "([\w/-]+)"\s*$', re.M)
_HEADER = re.compile(r"\A--\[\[(.*?)\]\]", re.S)


class LuaError(ValueError):
    """A script file that does not match its declaration or its caller."""


@dataclass(frozen=True)
class Header:
    """The names a script's header gives its KEYS and ARGV (``call_*``: per merged call)."""

    keys: tuple[str, ...]
    argv: tuple[str, ...]
    call_keys: tuple[str, ...] = ()
    call_argv: tuple[str, ...] = ()


def parse_header(name: str, text: str) -> Header:
    """The declared KEYS and ARGV of a script's source (its first block comment)."""
    m = _HEADER.match(text)
    if m is None:
        raise LuaError(f"{name}.lua: no header comment naming its KEYS and ARGV")
    found: dict[tuple[str, bool], list[str]] = {}
    for kind, plus, number, ident in _ENTRY.findall(m.group(1)):
        names = found.setdefault((kind, plus == "+"), [])
        if int(number) != len(names) + 1:
            raise LuaError(f"{name}.lua: {kind}[{plus}{number}] {ident} is out of order")
        names.append(ident)
    return Header(
        keys=tuple(found.get(("KEYS", False), ())),
        argv=tuple(found.get(("ARGV", False), ())),
        call_keys=tuple(found.get(("KEYS", True), ())),
        call_argv=tuple(found.get(("ARGV", True), ())),
    )


def read_source(directory: Path, name: str) -> str:
    """A script's source with its ``@include`` lines replaced by the helpers (each once)."""
    seen: set[str] = set()

    def expand(text: str) -> str:
        def include(m: re.Match[str]) -> str:
            dep = m.group(1)
            if dep in seen:
                return ""
            seen.add(dep)
            return expand(_read(directory, dep, f"{name}.lua includes {dep!r}, which"))

        return _INCLUDE.sub(include, text)

    return expand(_read(directory, name, f"{name}.lua"))


def _read(directory: Path, name: str, what: str) -> str:
    try:
        return (directory / f"{name}.lua").read_text()
    except FileNotFoundError:
        raise LuaError(f"{what} does not exist in {directory}") from None


# The per-call KEYS and ARGV of the calls a script takes at once.
_Calls = Sequence[tuple[Sequence[Any], Sequence[Any]]]
K = TypeVar("K", bound=tuple[Any, ...])
A = TypeVar("A", bound=tuple[Any, ...])


class Lua(Script, Generic[K, A]):
    """One script, its source read once, and the NamedTuples its callers pass.

    ``keys`` and ``argv`` must name the header's fixed KEYS and ARGV in order; scripts that
    take many calls at once also give ``call_keys`` and ``call_argv``. It is a
    :class:`~service.runtime.batcher.Script`: the batcher sends it (and reloads it) as such.
    """

    def __init__(
        self,
        directory: Path,
        name: str,
        keys: type[K],
        argv: type[A],
        *,
        call_keys: type[NamedTuple] | None = None,
        call_argv: type[NamedTuple] | None = None,
    ) -> None:
        self.name = name
        source = read_source(directory, name)
        super().__init__(source, hashlib.sha1(source.encode()).hexdigest())
        self.header = parse_header(name, _read(directory, name, f"{name}.lua"))
        self.keys_type, self.argv_type = keys, argv
        declared = Header(
            keys=_fields(keys),
            argv=_fields(argv),
            call_keys=_fields(call_keys),
            call_argv=_fields(call_argv),
        )
        if declared != self.header:
            raise LuaError(f"{name}.lua declares {self.header}, its caller passes {declared}")

    def call(self, batcher: Batcher, keys: K, argv: A) -> asyncio.Future[Any]:
        """Queue one EVALSHA of this script with its KEYS and ARGV."""
        return batcher.call(self, keys + argv, len(keys))

    def call_merged(
        self,
        batcher: Batcher,
        keys: K,
        argv: A,
        call_keys: tuple[Any, ...],
        call_argv: tuple[Any, ...],
    ) -> asyncio.Future[Any]:
        """Queue one call of a script that takes many at once (see ``Batcher.call_merged``)."""
        return batcher.call_merged(self, keys, argv, call_keys, call_argv)

    def call_many(
        self,
        batcher: Batcher,
        keys: K,
        argv: A,
        calls: _Calls,
    ) -> asyncio.Future[Any]:
        """Queue one call of a script that takes many at once, with ``calls`` (each its
        ``call_keys`` and ``call_argv``) known together: one future, resolving with the list of
        their replies (an entry that failed is an exception)."""
        all_keys, all_argv = _flat(keys, argv, calls)
        return batcher.call(self, (*all_keys, *all_argv), len(all_keys))


def _flat(
    keys: tuple[Any, ...],
    argv: tuple[Any, ...],
    calls: Sequence[tuple[Sequence[Any], Sequence[Any]]],
) -> tuple[list[Any], list[Any]]:
    all_keys, all_argv = list(keys), list(argv)
    for call_keys, call_argv in calls:
        all_keys.extend(call_keys)
        all_argv.extend(call_argv)
    return all_keys, all_argv


def _fields(tp: type[Any] | None) -> tuple[str, ...]:
    return tuple(getattr(tp, "_fields", ())) if tp is not None else ()
