"""The client is a distribution of its own: typed, and importing nothing from the service."""

from __future__ import annotations

import ast
from pathlib import Path

import acceptd_client

CLIENT = Path(__file__).resolve().parents[2] / "client" / "acceptd_client"


def test_the_client_imports_neither_service_nor_webhooks() -> None:
    broken = []
    for path in sorted(CLIENT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            broken += [
                f"{path.name}: {n}" for n in names if n.split(".")[0] in ("service", "webhooks")
            ]
    assert broken == []


def test_the_client_is_typed_and_installed_from_its_folder() -> None:
    assert (CLIENT / "py.typed").exists()
    assert Path(acceptd_client.__file__).resolve().parent == CLIENT
