"""Every Lua script, in both forms Redis receives (includes expanded), passes luacheck.

luacheck is Debian's ``lua-check`` package: ``make install-dev`` installs it where it can
(root with apt-get). CI must have it; elsewhere its absence skips this test with a reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from service.queue import scripts as queue_scripts
from webhooks import scripts as webhook_scripts

# What Redis's Lua 5.1 sandbox provides besides the standard library.
REDIS_GLOBALS = ["redis", "cjson", "cmsgpack", "bit", "struct", "KEYS", "ARGV", "unpack"]


def test_every_script_passes_luacheck(tmp_path: Path) -> None:
    luacheck = shutil.which("luacheck")
    if luacheck is None:
        if os.environ.get("CI"):
            pytest.fail("luacheck is missing in CI: `make install-dev` installs lua-check")
        pytest.skip("luacheck not installed (Debian package lua-check; `make install-dev`)")
    files = []
    for package, registry in (("queue", queue_scripts.ALL), ("webhooks", webhook_scripts.ALL)):
        for name, script in registry.items():
            # Both forms: the EVAL text and the Function library (see service.runtime.lua).
            path = tmp_path / f"{package}_{name}.lua"
            path.write_text(script.source)
            assert script.library is not None
            library = tmp_path / f"{package}_{name}_library.lua"
            library.write_text(script.library)
            files += [str(path), str(library)]
    assert len(files) >= 30
    res = subprocess.run(
        [luacheck, "--std", "lua51", "--no-color", "--codes", "--globals", *REDIS_GLOBALS,
         "--", *files],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
