"""Every queue script's header against its Python caller, and its body against its header."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from service.queue import scripts
from service.runtime.lua import NAME, Header, Lua, LuaError, parse_header, read_source, sources

DIRECTORY = scripts.DIRECTORY
NAMES = sorted(p.stem for p in DIRECTORY.glob("*.lua"))
INCLUDES = sorted(DIRECTORY.glob("includes/*.lua"))

# A named local at the top of a script: ``local pending = KEYS[2]`` (maybe through tonumber).
_LOCAL = re.compile(r"^local (\w+) = (?:tonumber\()?(KEYS|ARGV)\[(\d+)\]\)?$")
# A per-call entry of a merged script: ``id = ARGV[ab + 1]``.
_CALL_ENTRY = re.compile(r"(\w+) = (KEYS|ARGV)\[(kb|ab) \+ (\d+)\]")
_INDEXING = re.compile(r"\b(KEYS|ARGV)\[")
_COUNTS = re.compile(r"^local FIXED_KEYS, CALL_KEYS, FIXED_ARGV, CALL_ARGV = (.*)$", re.M)


def body(name: str) -> str:
    """A script file's text after its header comment."""
    text = (DIRECTORY / f"{name}.lua").read_text()
    return text[text.index("]]\n") + 3 :]


def test_every_script_file_is_registered_with_its_callers_tuples() -> None:
    assert sorted(scripts.ALL) == NAMES
    for name, lua in scripts.ALL.items():
        assert lua.header.keys == lua.keys_type._fields, name
        assert lua.header.argv == lua.argv_type._fields, name
        assert lua.header.keys and lua.header.argv, name


@pytest.mark.parametrize(
    ("name", "call_keys", "call_argv"),
    [
        ("submit", scripts.SubmitCallKeys, scripts.SubmitCallArgv),
        ("start", scripts.StartCallKeys, scripts.StartCallArgv),
        ("finish", scripts.FinishCallKeys, scripts.FinishCallArgv),
        ("expire", scripts.ExpireCallKeys, scripts.ExpireCallArgv),
        ("forget", scripts.ForgetCallKeys, scripts.ForgetCallArgv),
    ],
)
def test_a_merged_script_declares_its_per_call_entries(
    name: str, call_keys: type[NamedTuple], call_argv: type[NamedTuple]
) -> None:
    header = scripts.ALL[name].header
    assert header.call_keys == call_keys._fields
    assert header.call_argv == call_argv._fields
    counts = _COUNTS.search(body(name))
    assert counts is not None
    assert [int(n) for n in counts.group(1).split(", ")] == [
        len(header.keys),
        len(header.call_keys),
        len(header.argv),
        len(header.call_argv),
    ]


@pytest.mark.parametrize("name", NAMES)
def test_a_script_indexes_keys_and_argv_only_in_its_named_locals(name: str) -> None:
    header = parse_header(name, (DIRECTORY / f"{name}.lua").read_text())
    lines = body(name).splitlines()
    top: dict[str, list[str]] = {"KEYS": [], "ARGV": []}
    i = 0
    while i < len(lines) and (m := _LOCAL.match(lines[i])):
        local, kind, number = m.groups()
        assert int(number) == len(top[kind]) + 1, lines[i]
        top[kind].append(local)
        i += 1
    assert tuple(top["KEYS"]) == header.keys
    assert tuple(top["ARGV"]) == header.argv
    rest = "\n".join(lines[i:])
    per_call: dict[str, list[str]] = {"KEYS": [], "ARGV": []}
    for local, kind, _, number in _CALL_ENTRY.findall(rest):
        assert int(number) == len(per_call[kind]) + 1, (name, local)
        per_call[kind].append(local)
    assert tuple(per_call["KEYS"]) == header.call_keys
    assert tuple(per_call["ARGV"]) == header.call_argv
    # Nothing else indexes KEYS or ARGV (``#KEYS``, counting the calls, is not indexing).
    assert len(_INDEXING.findall(rest)) == len(header.call_keys) + len(header.call_argv)


@pytest.mark.parametrize("name", NAMES)
def test_includes_resolve(name: str) -> None:
    source = read_source(DIRECTORY, name)
    assert "@include" not in source
    both = sources(name, source)
    assert both.eval == scripts.ALL[name].source
    assert scripts.ALL[name].library == both.library.replace(NAME, scripts.ALL[name].function or "")


def test_a_script_is_split_at_its_call_line_into_what_is_defined_once_and_one_call() -> None:
    text = (
        "--[[ s: t.\n  KEYS[1] a\n  ARGV[1] n\n]]\n"
        "local a = KEYS[1]\nlocal n = tonumber(ARGV[1])\n"
        "local seen\nlocal function f() return seen end\n"
        "--- @call\nseen = {}\nreturn {a, n}\n"
    )
    both = sources("s", text)
    # EVAL runs it all each time; the includes' state is set at the call line there too.
    assert both.eval == "local RESET = {}\n" + text.replace(
        "--- @call\n", "for _, reset in ipairs(RESET) do reset() end\n"
    )
    lib = both.library
    assert lib.startswith(
        f"#!lua name={NAME}\nlocal KEYS, ARGV\nlocal RESET = {{}}\nlocal a\nlocal n\n"
    )
    # The named locals are assigned per call, inside the function; the helpers are not.
    defined, call = lib.split("local function call()\n")
    assert "local function f()" in defined and "KEYS[1]" not in defined
    assert call.startswith("a = KEYS[1]\nn = tonumber(ARGV[1])\n")
    assert "seen = {}\nreturn {a, n}\nend\n" in call
    assert "flags = {}" in call
    assert "flags = {'no-writes'}" in sources("s", text.replace("@call", "@call no-writes")).library
    for broken in (text.replace("--- @call\n", ""), text + "--- @call\n"):
        with pytest.raises(LuaError, match="@call"):
            sources("s", broken)


def test_only_scripts_that_write_nothing_are_flagged_no_writes() -> None:
    read_only = {n for n, lua in scripts.ALL.items() if "'no-writes'" in (lua.library or "")}
    assert read_only == {"ahead", "stats"}


def test_every_include_is_used_names_the_locals_it_expects_and_indexes_nothing() -> None:
    sources = {name: (DIRECTORY / f"{name}.lua").read_text() for name in NAMES}
    sources.update({f"includes/{p.stem}": p.read_text() for p in INCLUDES})
    for path in INCLUDES:
        text = path.read_text()
        assert any(f'--- @include "includes/{path.stem}"' in s for s in sources.values()), path
        assert re.match(r"-- Expects (no locals|locals: |the locals of )", text), path
        assert not _INDEXING.search(text), path


def test_a_missing_include_is_reported(tmp_path: Path) -> None:
    (tmp_path / "s.lua").write_text('--[[ s\n  KEYS[1] a\n]]\n--- @include "gone"\n')
    with pytest.raises(LuaError, match="gone"):
        read_source(tmp_path, "s")


def test_parse_header_reads_fixed_and_per_call_entries() -> None:
    text = "--[[ x: y.\n  KEYS[1] a  the a\n  ARGV[1] b\n  each call:\n  KEYS[+1] c\n]]\nreturn 1\n"
    assert parse_header("x", text) == Header(keys=("a",), argv=("b",), call_keys=("c",))


def test_parse_header_rejects_entries_out_of_order() -> None:
    text = "--[[ x: y.\n  KEYS[1] a\n  KEYS[3] c\n  KEYS[2] b\n]]\n"
    with pytest.raises(LuaError, match="out of order"):
        parse_header("x", text)


def test_parse_header_requires_a_header() -> None:
    with pytest.raises(LuaError, match="no header"):
        parse_header("x", "return redis.call('GET', KEYS[1])\n")


def test_a_caller_whose_tuples_differ_from_the_header_is_refused() -> None:
    class Swapped(NamedTuple):
        running: str
        record: str

    with pytest.raises(LuaError, match="renew"):
        Lua(DIRECTORY, "renew", Swapped, scripts.RenewArgv)


def test_the_lua_files_are_package_data() -> None:
    import tomllib

    pyproject = Path(__file__).parents[2] / "pyproject.toml"
    data: Any = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]
    assert "queue/lua/*.lua" in data["service"]
    assert "queue/lua/includes/*.lua" in data["service"]


# A key built inside Lua: one of the keys' name parts (service.queue.keys) concatenated.
_PARTS = r"(?:r|ev|c|idem|rl|glob|cev|hand|signal|hooked|pending|running|delayed)"
_BUILT_KEY = re.compile(rf"\.\.\s*'{_PARTS}:?'|'{_PARTS}:'\s*\.\.")


@pytest.mark.parametrize("name", NAMES)
def test_a_script_declares_every_key_it_touches(name: str) -> None:
    # Redis (and Redis Cluster during a slot migration) requires it: no key derived in Lua.
    text = (DIRECTORY / f"{name}.lua").read_text()
    header = parse_header(name, text)
    assert "prefix" not in header.keys + header.call_keys, name
    assert "derived" not in text.lower(), name
    source = scripts.ALL[name].source
    assert not re.search(r"\bprefix\b", source), name
    assert not _BUILT_KEY.search(source), name


def test_the_member_layout_is_the_same_in_lua_and_python() -> None:
    from service.queue import keys

    text = (DIRECTORY / "includes" / "member.lua").read_text()
    assert "return rid .. '\\n' .. cid" in text
    assert keys.member("01x", "alice") == "01x\nalice"
    assert keys.parse_member(keys.member("01x", "alice")) == ("01x", "alice")
