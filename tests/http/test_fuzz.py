"""Fuzzing every operation of ``/openapi.json`` with schemathesis (issue 13, item 5).

The service (API and a worker, the shipped operations) runs on a free loopback port on the
suite's private Redis; schemathesis draws requests from the document it serves, valid and
invalid ones, and checks that no answer is a server error and that every answer matches
the document. Bounded by ``ACCEPTD_FUZZ_EXAMPLES`` per operation and generation mode (a few
here, so the suite stays fast; ``make fuzz`` runs many more).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import yaml
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import response_schema_conformance

from service.app import create_app
from service.runtime.config import settings_from_dict
from service.runtime.embedded import free_port
from service.state import Roles

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("ACCEPTD_FUZZ_EXAMPLES", "6"))
CHECKS = [not_a_server_error, response_schema_conformance]


@pytest.fixture
def served(redis_url: str) -> Iterator[str]:
    """The shipped configuration, served from a thread of its own; its base URL."""
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["redis"]["url"] = redis_url
    # Synchronous submits must not hold the fuzzer: they fall back to 202 at once.
    raw["server"].update(sync_wait_seconds=0.1, max_wait_seconds=0.3, shutdown_grace_seconds=1)
    raw["worker"].update(idle_check_seconds=0.5)
    app = create_app(settings_from_dict(raw), Roles(api=True, worker=True))
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, handle_signals=False)
    port = free_port()
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, name="fuzzed-service", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.mark.timeout(int(os.environ.get("ACCEPTD_FUZZ_TIMEOUT", "300")))
def test_fuzz_every_operation_of_the_openapi_document(
    served: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    schema = schemathesis.openapi.from_url(f"{served}/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()  # the document itself is sound
        operations.append(result.ok())
    assert len(operations) >= 20
    failures: list[str] = []
    with requests.Session() as session:
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                try:
                    fuzz(operation, mode, served, session)
                except Unsatisfiable:
                    assert mode is GenerationMode.NEGATIVE  # nothing can be invalid there
                except Exception as exc:  # collect them all: one run shows every finding
                    failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
    # Errors a client never sees (a stream already started, a worker's run) are logged.
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not logged, logged


def fuzz(operation: Any, mode: GenerationMode, base_url: str, session: requests.Session) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        # An event stream stays open: read what it sends in its first 0.3 s.
        timeout = 0.3 if operation.path.endswith("/events") else 10
        response = case.call(base_url=base_url, session=session, timeout=timeout)
        case.validate_response(response, checks=CHECKS)

    run()
