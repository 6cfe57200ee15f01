"""The operator console (/console) in headless Chromium against a service with real traffic.

Each test starts the API, a worker and a dispatcher on a loopback port with three clients (an
operator and two others), makes real requests, opens a view and checks what a person would,
then saves the view's screenshot under docs/screenshots/ (the README shows them).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright, expect

from service.app import create_app
from service.queue import presence
from service.runtime.embedded import free_port
from service.state import Roles
from tests.http.test_api import make_settings
from tests.support import handlers
from tests.support.browser import LAUNCH_ARGS, ChromiumUnavailable, ensure_chromium
from tests.support.webhooks import Receiver, wait_until

pytestmark = pytest.mark.timeout(30, func_only=True)

ROOT = Path(__file__).resolve().parents[2]
# The README's screenshots are rewritten only when asked (`make screenshots`): a plain run
# still takes every one (the view renders) but leaves the checkout as it was.
SHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("ACCEPTD_SCREENSHOTS")
    else Path(tempfile.gettempdir()) / "acceptd-screenshots"
)
TIMEOUT_MS = 10_000
KEYS = {
    "ops": "console-operator-key-0123",
    "alice": "console-alice-key-0123456",
    "bob": "console-bob-key-0123456789",
}
CLIENTS = [{"name": n, "key": k, "admin": n == "ops"} for n, k in KEYS.items()]
ASYNC = {"Prefer": "respond-async"}


class Service:
    """The running service and a way to call it as one of the clients."""

    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self.url = url
        self.http = http

    async def call(self, who: str, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {KEYS[who]}", **ASYNC}
        async with self.http.request(method, self.url + path, json=body, headers=headers) as resp:
            assert resp.status < 400, (resp.status, await resp.text())
            return await resp.json()

    async def open_stream(self, who: str, rid: str) -> None:
        """Open the request's event stream and leave once it answered: from then on its
        events are kept (for resuming), as any stream opened on it makes them."""
        headers = {"Authorization": f"Bearer {KEYS[who]}"}
        path = f"{self.url}/v1/queue/requests/{rid}/events"
        async with self.http.get(path, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            await resp.content.readline()

    async def wait(self, who: str, rid: str, statuses: set[str]) -> Any:
        async def done() -> bool:
            body = await self.call(who, "GET", f"/v1/queue/requests/{rid}")
            return bool(body["status"] in statuses)

        await wait_until(done, timeout=10)
        return await self.call(who, "GET", f"/v1/queue/requests/{rid}")


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return ensure_chromium(tmp_path_factory.getbasetemp())
    except ChromiumUnavailable as exc:
        pytest.skip(f"no Chromium for the browser tests: {exc}")


@pytest.fixture
async def service(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Service]:
    monkeypatch.setattr(presence, "INTERVAL", 0.2)
    settings = make_settings(
        redis_url,
        auth={"clients": CLIENTS},
        server={"shutdown_grace_seconds": 2},
        webhooks={"allow_networks": ["127.0.0.0/8"], "retry_schedule": [30]},
        operations={"fails-once": {"handler": "tests.support.handlers:fails_once", "attempts": 1}},
    )
    app = create_app(settings, Roles(api=True, worker=True, dispatcher=True))
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=2)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with aiohttp.ClientSession() as http:
        yield Service(f"http://127.0.0.1:{port}", http)
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
def open_console(browser: Browser, service: Service) -> Callable[..., Awaitable[Page]]:
    async def open_(view: str, who: str | None = "ops") -> Page:
        context = await browser.new_context(viewport={"width": 1280, "height": 860})
        if who is not None:  # as if the key had been typed in this tab already
            await context.add_init_script(
                f"sessionStorage.setItem('acceptd.console.key', {json.dumps(KEYS[who])})"
            )
        page = await context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"{service.url}/console#{view}")
        return page

    return open_


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def test_overview_charts_the_last_minute_and_workers_show_running_requests(
    service: Service, open_console: Callable[..., Awaitable[Page]]
) -> None:
    for i in range(6):
        await service.call("alice", "POST", "/v1/echo", {"i": i})
    done = await service.call("alice", "POST", "/v1/sleep", {"seconds": 0.2})
    await service.wait("alice", done["id"], {"succeeded"})
    hung = await service.call("bob", "POST", "/v1/sleep", {"seconds": 60})
    await service.call("bob", "POST", "/v1/boom", {})
    await service.wait("bob", hung["id"], {"running"})

    page = await open_console("overview")
    chart = page.locator(".chart.throughput[data-operation=echo]")
    await expect(chart).to_have_attribute("data-last-minute", "6")
    points = await chart.locator("polyline[data-series=submitted]").get_attribute("points")
    assert points and len(points.split()) >= 60  # a point a second over the window
    row = page.locator("#ops-rows tr[data-operation=boom]")
    await expect(row.locator("td").nth(5)).to_have_text("100.0 %")  # boom's failure rate
    await expect(page.locator("#whoami")).to_contain_text("operator ops")
    await shot(page, "overview")

    await page.goto(page.url.split("#")[0] + "#workers")
    worker = page.locator("#worker-rows tr[data-kind=worker]")
    await expect(worker).to_contain_text(hung["id"])
    await expect(worker).to_contain_text("sleep")
    await expect(page.locator("#worker-rows tr[data-kind=dispatcher]")).to_have_count(1)
    await shot(page, "workers")

    # The request page of the hung request: Cancel stops it. Its owner opened its event
    # stream, so its events from then on are kept: the timeline shows them.
    await service.open_stream("bob", hung["id"])
    await page.goto(page.url.split("#")[0] + f"#request/{hung['id']}")
    await expect(page.locator("#r-facts")).to_contain_text("bob")
    await expect(page.locator("#r-input")).to_contain_text('"seconds": 60')
    steps = page.locator("#r-timeline")
    await expect(steps.locator("li[data-event=created][data-source=monitor]")).to_have_count(1)
    await page.get_by_role("button", name="Cancel").click()
    await expect(page.locator("#r-facts dd.status-canceled")).to_have_count(1)
    for event in ("cancel_requested", "canceled"):
        stored = steps.locator(f"li[data-event={event}][data-source=events]")
        await expect(stored).to_have_count(1)
        await expect(stored).to_contain_text("event ")
    await expect(steps.locator("li[data-source]").last).to_contain_text("canceled: Canceled")
    await shot(page, "request")


async def test_failures_grouped_by_problem_type_and_retry_succeeds(
    service: Service, open_console: Callable[..., Awaitable[Page]]
) -> None:
    handlers.FAIL_ONCE.add("k1")
    failed = await service.call("alice", "POST", "/v1/fails-once", {"key": "k1"})
    await service.call("alice", "POST", "/v1/boom", {})
    body = await service.wait("alice", failed["id"], {"failed"})
    problem_type = body["error"]["type"]

    page = await open_console("failures")
    group = page.locator(f".group[data-operation=fails-once][data-type='{problem_type}']")
    await expect(group.locator(f"tr[data-id='{failed['id']}']")).to_have_count(1)
    await expect(page.locator(".group[data-operation=boom]")).to_have_count(1)
    await shot(page, "failures")
    await group.locator(f"tr[data-id='{failed['id']}'] button.retry").click()
    link = group.locator(".retried a")
    await expect(link).to_have_count(1)
    new_id = (await link.text_content() or "").strip()
    assert new_id and new_id != failed["id"]
    retried = await service.wait("alice", new_id, {"succeeded", "failed"})
    assert retried["status"] == "succeeded" and retried["retry_of"] == failed["id"]
    assert retried.get("client", "alice") == "alice"  # retried for its own client
    mine = await service.call("alice", "GET", f"/v1/queue/requests/{new_id}")
    assert mine["id"] == new_id


async def test_webhooks_show_the_failing_endpoints_last_status_and_redeliver_sends_again(
    service: Service, open_console: Callable[..., Awaitable[Page]]
) -> None:
    async with Receiver() as receiver:
        receiver.default = (500, {})
        endpoint = await service.call(
            "alice",
            "POST",
            "/v1/webhooks/endpoints",
            {"url": receiver.url + "/hook", "events": ["request.succeeded"]},
        )
        sent = await service.call("alice", "POST", "/v1/echo", {"hook": True})
        await service.wait("alice", sent["id"], {"succeeded"})
        await wait_until(lambda: len(receiver.received) >= 1, timeout=10)

        async def attempt_logged() -> bool:
            log = await service.call(
                "alice", "GET", f"/v1/webhooks/endpoints/{endpoint['id']}/deliveries"
            )
            return bool(log["items"] and log["items"][0]["attempts"])

        await wait_until(attempt_logged, timeout=10)
        page = await open_console("webhooks", who="alice")
        block = page.locator(f".endpoint[data-id='{endpoint['id']}']")
        await expect(block.locator(".last-error")).to_contain_text("HTTP 500")
        await expect(block.locator("td.code").first).to_have_text("500")
        await shot(page, "webhooks")
        before = len(receiver.received)
        await block.locator("button.redeliver").first.click()
        await wait_until(lambda: len(receiver.received) > before, timeout=10)
        # The request's page lists its deliveries, with the last status code and Redeliver.
        await page.goto(page.url.split("#")[0] + f"#request/{sent['id']}")
        row = page.locator("#r-deliveries tr").first
        await expect(row).to_contain_text(endpoint["id"])
        await expect(row.locator("td.code")).to_have_text("500")
        before = len(receiver.received)
        await row.locator("button.redeliver").click()
        await wait_until(lambda: len(receiver.received) > before, timeout=10)
        # An operator sees alice's endpoint, saying whose, and can redeliver it too.
        ops = await open_console("webhooks")
        theirs = ops.locator(f".endpoint[data-id='{endpoint['id']}']")
        await expect(theirs).to_contain_text("client alice")
        await expect(theirs.locator(".last-error")).to_contain_text("HTTP 500")
        before = len(receiver.received)
        await theirs.locator("button.redeliver").first.click()
        await wait_until(lambda: len(receiver.received) > before, timeout=10)


async def test_a_non_admin_key_sees_only_its_own_requests(
    service: Service, open_console: Callable[..., Awaitable[Page]]
) -> None:
    mine = await service.call("alice", "POST", "/v1/echo", {"who": "alice"})
    theirs = await service.call("bob", "POST", "/v1/echo", {"who": "bob"})
    page = await open_console("requests", who=None)
    await page.locator("#key").fill(KEYS["alice"])
    await page.get_by_role("button", name="Use key").click()
    await expect(page.locator(f"#request-rows tr[data-id='{mine['id']}']")).to_have_count(1)
    await expect(page.locator("#whoami")).to_contain_text("client alice")
    await expect(page.locator(f"#request-rows tr[data-id='{theirs['id']}']")).to_have_count(0)
    await expect(page.locator("#f-client-label")).to_be_hidden()
    await shot(page, "requests-own")
    # The key stays for the tab: a reload does not ask again.
    await page.reload()
    await expect(page.locator(f"#request-rows tr[data-id='{mine['id']}']")).to_have_count(1)
    # The operator sees both, each saying whose.
    ops = await open_console("requests")
    await expect(ops.locator(f"#request-rows tr[data-id='{theirs['id']}']")).to_contain_text("bob")
    await expect(ops.locator(f"#request-rows tr[data-id='{mine['id']}']")).to_contain_text("alice")
    await shot(ops, "requests")
