"""The bench tools that rewrite the queue's scripts still find what they cut.

``bench/script_parts.py`` measures ``submit.lua`` with parts cut out by text replacement: a
change to the script can leave a cut pointing at text that is gone, and the tool then stops at
import (it did, after the script's per-call tables changed). Here every variant must build,
differ from the real script, and compile in a real server.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

from service.runtime.redis import Client

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture
def script_parts(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop("script_parts", None)
    return importlib.import_module("script_parts")


async def test_every_submit_variant_cuts_something_and_compiles(
    script_parts: ModuleType, redis_client: Client
) -> None:
    variants: dict[str, str] = script_parts.VARIANTS
    real = variants["full"]
    assert real == script_parts.SOURCE
    cut = [name for name in variants if name not in ("noop", "full", "minimal")]
    assert len(cut) >= 4
    for name in cut:
        assert variants[name] != real, name
        assert len(variants[name]) < len(real) or "do return" in variants[name], name
    for name, source in variants.items():
        assert len(await redis_client.script_load(source)) == 40, name
