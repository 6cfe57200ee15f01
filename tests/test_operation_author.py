"""README "Writing an operation", step by step as a new user runs it: ``acceptd new-operation``
writes a handler package beside config.yaml, and ``acceptd serve`` (the console script, with
no PYTHONPATH) imports it from there."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
from acceptd_client import Client

from service.runtime.embedded import EmbeddedRedis, free_port
from tests.support.processes import clean_env

BIN = Path(sys.executable).parent


def test_a_new_operation_beside_config_yaml_serves(
    tmp_path: Path, redis_server: EmbeddedRedis, redis_url: str
) -> None:
    app = tmp_path / "myapp"
    app.mkdir()
    env = clean_env({})
    env.pop("PYTHONPATH", None)
    made = subprocess.run(
        [str(BIN / "acceptd"), "new-operation", "shout", "--package", "mypkg"],
        cwd=app, env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "shout: {handler: mypkg.shout:shout" in made.stdout
    stanza = made.stdout.split("\n\n", 1)[1]
    (app / "config.yaml").write_text(stanza)
    port = free_port()
    env.update(ACCEPTD_REDIS__URL=redis_url, ACCEPTD_SERVER__PORT=str(port))
    with (tmp_path / "serve.log").open("wb") as log:
        serve = subprocess.Popen(
            [str(BIN / "acceptd"), "serve", "--config", "config.yaml"],
            cwd=app, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"

            deadline = time.monotonic() + 20
            while True:  # bounded polling of the real answer
                assert serve.poll() is None, (tmp_path / "serve.log").read_text()
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "acceptd serve did not answer in 20 s"
                time.sleep(0.1)
            with Client(base) as client:
                assert client.run("shout", {"text": "hi"}, timeout=10) == {"text": "HI"}
        finally:
            serve.kill()
            serve.wait(10)
    again = subprocess.run(
        [str(BIN / "acceptd"), "new-operation", "shout", "--package", "mypkg"],
        cwd=app, env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert again.returncode == 2 and "not overwritten" in again.stderr
