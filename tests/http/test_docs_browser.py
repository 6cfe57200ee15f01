"""/docs (Swagger UI, offline, "Try it out" with a Bearer key) and the browser client module
(/static/acceptd-client.js) in headless Chromium, against the real app on a loopback port."""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.async_api import Route, expect

from tests.http.test_browser import (  # noqa: F401 - fixtures
    KEY,
    Watched,
    browser,
    chromium,
    open_blank,
    serve,
    watched,
)

pytestmark = pytest.mark.timeout(30, func_only=True)


async def test_docs_render_every_operation_offline_and_try_it_out_succeeds(
    serve: Any,  # noqa: F811
    watched: Watched,  # noqa: F811
) -> None:
    served = await serve(auth={"clients": [{"name": "docs", "key": KEY}]})
    base, page = served.url, watched.page
    outside: list[str] = []

    async def only_the_service(route: Route) -> None:
        if route.request.url.startswith(base + "/"):
            await route.continue_()
        else:  # offline: nothing may come from anywhere else
            outside.append(route.request.url)
            await route.abort()

    await page.route("**/*", only_the_service)
    await page.goto(f"{base}/docs")
    spec = json.loads(await (await page.request.get(f"{base}/openapi.json")).text())
    count = sum(len(methods) for methods in spec["paths"].values())
    await expect(page.locator(".opblock")).to_have_count(count)
    for op in ("submit_echo", "submit_sleep", "get_echo_result"):
        await expect(page.locator(f"[id$='-{op}']")).to_have_count(1)

    await page.locator(".auth-wrapper button.authorize").click()
    await page.locator(".modal-ux input").first.fill(KEY)
    await page.locator(".modal-ux button.authorize").click()
    await page.locator(".modal-ux button.btn-done").click()

    block = page.locator("[id$='-submit_echo']")
    await block.locator(".opblock-summary").first.click()
    await block.locator("button.try-out__btn").click()
    await block.locator("textarea.body-param__text").fill('{"hello": "docs"}')
    await block.locator("button.execute").click()
    status = block.locator(".live-responses-table tbody .response-col_status").first
    await expect(status).to_have_text("201")
    await expect(block.locator(".live-responses-table")).to_contain_text('"hello": "docs"')
    assert outside == []
    assert not [p for p in watched.problems if p.startswith("page error")], watched.problems


MODULE_JS = """
async (key) => {
  const {AcceptdClient, AcceptdError} = await import("/static/acceptd-client.js");
  const client = new AcceptdClient({apiKey: key});
  const seen = [];
  const request = await client.submit("sleep", {seconds: 0.5, steps: 2});
  const final = await client.watch(request.id, {onEvent: (type, data) => seen.push(type)});
  const result = await client.result(final);
  const queued = await client.submit("sleep", {seconds: 30, steps: 1}, {priority: 2});
  const canceled = await client.cancel(queued.id);
  const watched = await client.watch(queued.id);
  let refused = null;
  try { await client.submit("sleep", {seconds: "x"}); } catch (e) {
    refused = e instanceof AcceptdError && e.status;
  }
  const listed = await client.list({limit: 10});
  return {final: final.status, result, seen, canceled: watched.status,
          cancelAnswer: canceled.status, refused, listed: listed.items.length};
}
"""


async def test_the_browser_client_module(serve: Any, watched: Watched) -> None:  # noqa: F811
    served = await serve(auth={"clients": [{"name": "module", "key": KEY}]})
    await open_blank(watched.page, served.url)
    out = await watched.page.evaluate(MODULE_JS, KEY)
    assert out["final"] == "succeeded" and out["result"] == {"slept": 0.5}
    assert out["seen"][0] == "status" and "progress" in out["seen"]
    assert out["canceled"] == "canceled" and out["cancelAnswer"] in ("canceled", "running")
    assert out["refused"] == 422 and out["listed"] == 2
    # The one 422 is the refused submit, which the browser logs itself.
    assert [p for p in watched.problems if "422" not in p] == []
