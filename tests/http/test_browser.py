"""The service in a real browser: EventSource resumption (CONTRACT.md section 5) and the dashboard.

Headless Chromium (Debian's package, see tests/browser_setup.py) driven by Playwright, against
the real app on a real loopback port: the aiohttp test client's in-memory transport would not
exercise what a browser does (reconnects, Last-Event-ID, the 204 that stops EventSource).
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from PIL import Image
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    FilePayload,
    Page,
    async_playwright,
    expect,
)

from service.app import create_app
from service.http import sse
from service.runtime.embedded import free_port
from service.state import Roles
from tests.http.test_api import ASYNC, make_settings
from tests.support.browser import LAUNCH_ARGS, ChromiumUnavailable, ensure_chromium

# Only the test body: the first test's setup may include installing Chromium (about 30 s).
# Setup steps bound themselves (launch timeout, server start).
pytestmark = pytest.mark.timeout(20, func_only=True)

TIMEOUT_MS = 10_000
KEY = "browser-test-key-0123456789"
# Blank page in the service's origin, so fetch and EventSource are same-origin. Served by
# Playwright's router; the data: icon avoids a /favicon.ico request (a 404 in the console).
BLANK = '<!doctype html><html><head><link rel="icon" href="data:,"></head><body></body></html>'


@dataclass
class Served:
    app: web.Application
    url: str


@dataclass
class Watched:
    """A page and every console error or warning and uncaught exception it produced."""

    page: Page
    problems: list[str] = field(default_factory=list)


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the folder all workers of this run share
    try:
        return ensure_chromium(shared)
    except ChromiumUnavailable as exc:
        pytest.skip(f"no Chromium for the browser tests: {exc}")


@pytest.fixture
async def serve(redis_url: str) -> AsyncIterator[Callable[..., Awaitable[Served]]]:
    """Start the API and a worker on a free loopback port; stopped after the test."""
    runners: list[web.AppRunner] = []

    async def start(**overrides: Any) -> Served:
        overrides.setdefault("server", {}).setdefault("shutdown_grace_seconds", 2)
        app = create_app(make_settings(redis_url, **overrides), Roles(api=True, worker=True))
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=2)
        await runner.setup()
        runners.append(runner)
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return Served(app, f"http://127.0.0.1:{port}")

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(chromium), headless=True, args=LAUNCH_ARGS, timeout=15_000
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def watched(browser: Browser) -> AsyncIterator[Watched]:
    context = await browser.new_context()
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    out = Watched(page)

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type in ("error", "warning"):
            out.problems.append(f"console {msg.type}: {msg.text} ({msg.location})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: out.problems.append(f"page error: {exc}"))
    yield out
    await context.close()


async def open_blank(page: Page, base: str) -> None:
    """A blank page whose origin is the service's."""
    await page.route(
        f"{base}/__blank", lambda route: route.fulfill(body=BLANK, content_type="text/html")
    )
    await page.goto(f"{base}/__blank")


# Submits the request, follows its events link with EventSource and records everything on
# window.sse: each event's type, lastEventId and status, the opens, and the end (CLOSED).
FOLLOW_JS = """
async () => {
  const response = await fetch("/v1/sleep", {
    method: "POST",
    headers: {"Content-Type": "application/json", "Prefer": "respond-async"},
    body: JSON.stringify({seconds: 1.5, steps: 3}),
  });
  const monitor = await response.json();
  const log = window.sse = {events: [], opens: 0, closed: false, sawRunning: false};
  const source = new EventSource(monitor.links.find((link) => link.rel === "events").href);
  for (const type of ["status", "progress", "position"]) {
    source.addEventListener(type, (e) => {
      const status = JSON.parse(e.data).status ?? null;
      log.events.push({type, id: e.lastEventId, status, state: source.readyState});
      if (type === "status" && status === "running") log.sawRunning = true;
    });
  }
  source.addEventListener("open", () => { log.opens += 1; });
  source.addEventListener("error", () => {
    log.events.push({type: "error", id: "", status: null, state: source.readyState});
    if (source.readyState === EventSource.CLOSED) log.closed = true;
  });
  return {code: response.status, id: monitor.id, status: monitor.status};
}
"""


async def wait_running(base: str, rid: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            async with http.get(f"{base}/v1/queue/requests/{rid}") as resp:
                if (await resp.json())["status"] == "running":
                    return
            await asyncio.sleep(0.02)
    raise AssertionError(f"{rid} never started")


async def test_event_source_resumes_after_a_dropped_stream_and_stops_at_the_end(
    serve: Callable[..., Awaitable[Served]], watched: Watched
) -> None:
    served = await serve(worker={"concurrency": 1})
    page = watched.page
    stream_codes: list[int] = []
    page.on("response", lambda r: stream_codes.append(r.status) if "/events" in r.url else None)
    # Occupy the only worker slot, so the browser's request is certainly seen queued first.
    async with aiohttp.ClientSession() as http:
        body = {"seconds": 1.0}
        async with http.post(f"{served.url}/v1/sleep", json=body, headers=ASYNC) as resp:
            blocker = (await resp.json())["id"]
    await wait_running(served.url, blocker)
    await open_blank(page, served.url)

    submitted = await page.evaluate(FOLLOW_JS)
    assert submitted["code"] == 202 and submitted["status"] == "queued"
    await page.wait_for_function("window.sse.sawRunning", polling=50)
    # End every open stream, as a shutting-down process does: the browser reconnects by itself
    # with Last-Event-ID and must get exactly what it missed.
    await sse.close_streams(served.app)
    await page.wait_for_function("window.sse.closed", polling=50)
    log = await page.evaluate("window.sse")

    events = [e for e in log["events"] if e["type"] != "error"]
    statuses = [e["status"] for e in events if e["type"] == "status"]
    assert [s for i, s in enumerate(statuses) if i == 0 or s != statuses[i - 1]] == [
        "queued",
        "running",
        "succeeded",
    ], log
    ids = [e["id"] for e in events]
    assert all(ids) and len(set(ids)) == len(ids), ids  # nothing twice across the reconnect
    numbers = [tuple(int(part) for part in i.split(".")) for i in ids]
    assert numbers == sorted(numbers), ids
    assert events[-1]["type"] == "status" and events[-1]["status"] == "succeeded"
    assert log["opens"] >= 2, log  # the forced reconnect happened
    assert log["events"][-1] == {"type": "error", "id": "", "status": None, "state": 2}
    # First stream, the resumed one, then the reconnect after the end: 204 stops EventSource.
    assert stream_codes[0] == 200 and stream_codes[-1] == 204 and len(stream_codes) >= 3
    assert watched.problems == []


def png(width: int = 320, height: int = 200) -> bytes:
    image = Image.new("RGB", (width, height), (9, 105, 218))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


async def submit_form(page: Page, op: str, text: str | None = None) -> str:
    """Fill the form, submit it, and return the new request's id."""
    if await page.input_value("#op") != op:  # choosing an operation resets the form
        await page.select_option("#op", op)
    if text is not None:
        await page.fill("#input", text)
    async with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith(f"/v1/{op}")
    ) as info:
        await page.click("#submit button[type=submit]")
    response = await info.value
    assert response.status == 202, await response.text()
    return str((await response.json())["id"])


async def test_dashboard_submits_and_follows_requests_live(
    serve: Callable[..., Awaitable[Served]], watched: Watched
) -> None:
    served = await serve()
    page = watched.page
    await page.set_viewport_size({"width": 1200, "height": 900})
    await page.goto(f"{served.url}/")
    await expect(page.locator("#ops")).to_contain_text("bank-account-validations")
    await expect(page.locator("#live")).to_have_text("live")
    await page.select_option("#op", "bank-account-validations")
    await expect(page.locator("#input")).to_have_value(
        '{\n  "iban": "DE89 3704 0044 0532 0130 00"\n}'
    )

    slow = await submit_form(page, "sleep", '{"seconds": 0.5, "steps": 2}')
    echo = await submit_form(page, "echo", '{"hello": "browser"}')
    iban = await submit_form(page, "bank-account-validations")
    await page.select_option("#op", "image-thumbnails")
    picked = FilePayload(name="blue.png", mimeType="image/png", buffer=png())
    await page.set_input_files("#file", files=[picked])
    thumb = await submit_form(page, "image-thumbnails")

    for rid in (slow, echo, iban, thumb):
        row = page.locator(f'#rows tr[data-id="{rid}"]')
        await expect(row.locator("td.status")).to_have_text("succeeded")
    echo_row = page.locator(f'#rows tr[data-id="{echo}"]')
    await expect(echo_row.locator("td.result")).to_have_text('{"hello":"browser"}')
    await expect(page.locator(f'#rows tr[data-id="{iban}"] td.result')).to_contain_text(
        '"valid":true'
    )
    await expect(page.locator(f'#rows tr[data-id="{slow}"] td.progress')).to_contain_text("100%")
    image = page.locator(f'#rows tr[data-id="{thumb}"] td.result img')
    await expect(image).to_be_visible()
    assert await image.evaluate("(img) => img.naturalWidth") == 128
    # Cancel buttons only while a request can still be canceled.
    await expect(echo_row.locator("td.actions button")).to_be_hidden()
    await page.screenshot(path="/tmp/dashboard.png", full_page=True)
    assert watched.problems == []


async def test_dashboard_shows_validation_errors_and_cancels(
    serve: Callable[..., Awaitable[Served]], watched: Watched
) -> None:
    served = await serve(worker={"concurrency": 1})
    page = watched.page
    await page.goto(f"{served.url}/")
    await expect(page.locator("#live")).to_have_text("live")

    await page.select_option("#op", "sleep")
    await page.fill("#input", '{"seconds": -1}')
    await page.click("#submit button[type=submit]")
    await expect(page.locator("#msg")).to_contain_text("does not match the sleep schema")
    await expect(page.locator("#field-errors li")).to_have_count(1)
    await expect(page.locator("#field-errors li")).to_contain_text("seconds")

    running = await submit_form(page, "sleep", '{"seconds": 30}')
    queued = await submit_form(page, "sleep", '{"seconds": 30}')
    queued_row = page.locator(f'#rows tr[data-id="{queued}"]')
    running_row = page.locator(f'#rows tr[data-id="{running}"]')
    await expect(running_row.locator("td.status")).to_have_text("running")
    await expect(queued_row.locator("td.position")).to_have_text("0")
    await queued_row.locator("td.actions button").click()
    await expect(queued_row.locator("td.status")).to_have_text("canceled")
    await expect(queued_row.locator("td.result")).to_contain_text("cancel")
    await running_row.locator("td.actions button").click()
    await expect(running_row.locator("td.status")).to_have_text("canceled")
    # The 422 is logged by Chromium itself as a failed resource load; nothing else may be.
    assert [p for p in watched.problems if "status of 422" not in p] == []


async def test_dashboard_passes_the_access_token_along(
    serve: Callable[..., Awaitable[Served]], watched: Watched
) -> None:
    served = await serve(auth={"clients": [{"name": "alice", "key": KEY}]})
    page = watched.page
    await page.goto(f"{served.url}/?access_token={KEY}")
    await expect(page.locator("#ops")).to_contain_text("echo")
    await expect(page.locator("#live")).to_have_text("live")  # the stream took the token
    rid = await submit_form(page, "echo", '{"who": "alice"}')
    row = page.locator(f'#rows tr[data-id="{rid}"]')
    await expect(row.locator("td.status")).to_have_text("succeeded")
    await expect(row.locator("td.result")).to_have_text('{"who":"alice"}')
    assert watched.problems == []
    # The assets need no key (the page itself loads them), and only the allow-listed ones exist.
    async with aiohttp.ClientSession() as http:
        for name, code in [("dashboard.js", 200), ("dashboard.css", 200), ("index.html", 404)]:
            async with http.get(f"{served.url}/static/{name}") as resp:
                assert resp.status == code, name
