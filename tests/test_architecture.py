"""The layers' import rules, read from the source of every module of ``service`` and ``webhooks``.

Lower layers never import higher ones (``service.app`` wires them all), ``service`` reaches
``webhooks`` only through the package's top level, and only ``service.runtime.redis`` touches
redis-py's internals.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("service", "webhooks")

# (importing package, what it never imports)
LAYERS = [
    ("webhooks", ("aiohttp.web", "service.http", "service.app")),
    ("service.queue", ("service.http", "service.worker", "service.app")),
    ("service.runtime", ("service.http", "service.worker", "service.queue", "service.app")),
]

INTERNALS_MODULE = "service.runtime.redis"
INTERNAL_MODULES = ("redis.asyncio.connection", "redis.connection")
INTERNAL_NAMES = frozenset(
    {
        "connection_pool",
        "make_connection",
        "read_response",
        "send_packed_command",
        "send_command",
        "socket_timeout",
        "get_connection",
    }
)


@dataclass(frozen=True)
class Module:
    """One source module: its dotted name, its path from the root and its syntax tree."""

    name: str
    path: str
    tree: ast.Module

    def imports(self) -> Iterator[tuple[int, str]]:
        """(line, dotted name) of every module imported, or maybe imported (``from a import b``
        yields ``a`` and ``a.b``, as ``b`` may be a submodule)."""
        package = self.name if self.path.endswith("__init__.py") else self.name.rpartition(".")[0]
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield node.lineno, alias.name
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{parent}.{base}" if base else parent
                yield node.lineno, base
                for alias in node.names:
                    yield node.lineno, f"{base}.{alias.name}"


def _modules() -> list[Module]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT)
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            tree = ast.parse(path.read_text(), filename=str(rel))
            found.append(Module(".".join(parts), str(rel), tree))
    return found


MODULES = _modules()


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _fail_on(broken: list[tuple[str, str]]) -> None:
    first: dict[str, str] = {}
    for where, why in broken:  # one per place: "from a import b" is seen as a and as a.b
        first.setdefault(where, why)
    if first:
        pytest.fail("\n".join(f"{where}: {why}" for where, why in first.items()), pytrace=False)


def test_every_module_is_read() -> None:
    names = {m.name for m in MODULES}
    assert {"service.app", "service.queue.store", "webhooks.dispatcher", INTERNALS_MODULE} <= names


@pytest.mark.parametrize(("layer", "forbidden"), LAYERS, ids=[layer for layer, _ in LAYERS])
def test_layer_never_imports_higher_ones(layer: str, forbidden: tuple[str, ...]) -> None:
    _fail_on(
        [
            (f"{m.path}:{line}", f"imports {name}; {layer} never imports {prefix}")
            for m in MODULES
            if _within(m.name, layer)
            for line, name in m.imports()
            for prefix in forbidden
            if _within(name, prefix)
        ]
    )


def test_service_reaches_webhooks_only_through_its_top_level() -> None:
    submodules = {m.name for m in MODULES if _within(m.name, "webhooks") and m.name != "webhooks"}
    _fail_on(
        [
            (
                f"{m.path}:{line}",
                f"imports {name}; service imports only webhooks' top level "
                "(from webhooks import X); only service/app.py may wire anything",
            )
            for m in MODULES
            if _within(m.name, "service") and m.name != "service.app"
            for line, name in m.imports()
            if any(_within(name, sub) for sub in submodules)
        ]
    )


def test_only_one_module_touches_redis_internals() -> None:
    only = f"only {INTERNALS_MODULE} may touch redis-py internals"
    broken: list[tuple[str, str]] = []
    for m in MODULES:
        if m.name == INTERNALS_MODULE:
            continue
        for line, name in m.imports():
            if any(_within(name, internal) for internal in INTERNAL_MODULES):
                broken.append((f"{m.path}:{line}", f"imports {name}; {only}"))
        for node in ast.walk(m.tree):
            used = None
            if isinstance(node, ast.Attribute):
                used = node.attr
            elif isinstance(node, ast.keyword):
                used = node.arg
            elif isinstance(node, ast.Name):
                used = node.id
            if used in INTERNAL_NAMES:
                where = f"{m.path}:{getattr(node, 'lineno', '?')}"
                broken.append((f"{where} ({used})", f"uses {used}; {only}"))
    _fail_on(broken)


def test_the_subpackages_import_on_their_own() -> None:
    code = "import service.http, service.queue, service.worker"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"{code!r} failed:\n{done.stderr}"
