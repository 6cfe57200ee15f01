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

Every script is also a Redis Function library (``FUNCTION LOAD``, called with ``FCALL``),
which the batcher runs where the server has Functions (Redis 7, Valkey). An ``EVALSHA`` runs
the whole file each time: every helper function is created again, with its upvalues, and
collected afterwards, which costs a one-request run about as much as its commands (77,000
server instructions of a one-request submit's 350,000). A library defines them once, when
loaded. So a script file has two parts, split by a ``--- @call`` line:

- above it, what is defined once: the named KEYS and ARGV locals (the loader assigns them
  for each call), the includes, constants and ``local function`` helpers. Nothing above the
  line may call Redis or hold state for one call: state is declared there and given its value
  below the line, or, in an include, by a function it adds to ``RESET`` (every script has that
  local), which runs at the start of each call;
- below it, one call's work, ending with its reply.

``--- @call no-writes`` marks a script that only reads (it then runs on a server out of
memory, as an ``EVAL`` of it would).
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
_CALL = re.compile(r"^--- @call( no-writes)?\n", re.M)
# A named KEYS or ARGV local at the top of a script: ``local pending = KEYS[2]``.
_NAMED = re.compile(r"^local (\w+) = ((?:tonumber\()?(?:KEYS|ARGV)\[\d+\]\)?)\n", re.M)
# Where a library's function name goes (see Script): it is derived from the text.
NAME = "@NAME@"
# The start of each call of a script: the includes' per-call state set afresh.
_RESET = "for _, reset in ipairs(RESET) do reset() end\n"


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


@dataclass(frozen=True)
class Sources:
    """A script's two forms: ``EVAL`` text and ``FUNCTION LOAD`` library (named ``NAME``)."""

    eval: str
    library: str


def sources(name: str, text: str) -> Sources:
    """Both forms of a script from its source with includes resolved (see the module doc)."""
    parts = _CALL.split(text)
    if len(parts) != 3:
        raise LuaError(f"{name}.lua: needs one '--- @call' line, ahead of one call's work")
    defined, flag, per_call = parts
    m = _HEADER.match(defined)
    pos = m.end() + 1 if m else 0
    named: list[re.Match[str]] = []
    while n := _NAMED.match(defined, pos):
        named.append(n)
        pos = n.end()
    rest = defined[pos:]
    flags = "{'no-writes'}" if flag else "{}"
    library = (
        f"#!lua name={NAME}\n"
        "local KEYS, ARGV\n"
        "local RESET = {}\n"
        + "".join(f"local {n.group(1)}\n" for n in named)
        + rest
        + "local function call()\n"
        + "".join(f"{n.group(1)} = {n.group(2)}\n" for n in named)
        + _RESET
        + per_call
        + "end\n"
        f"redis.register_function{{function_name = '{NAME}', flags = {flags},\n"
        "  callback = function(keys, argv) KEYS, ARGV = keys, argv; return call() end}\n"
    )
    return Sources(eval="local RESET = {}\n" + defined + _RESET + per_call, library=library)


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
        both = sources(name, read_source(directory, name))
        super().__init__(
            both.eval,
            hashlib.sha1(both.eval.encode()).hexdigest(),
            both.library,
            f"{directory.parent.name}_{name}",
        )
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
