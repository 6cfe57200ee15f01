"""Operational endpoints: health, readiness, metrics, OpenAPI, docs and the dashboard."""

from __future__ import annotations

import asyncio
import functools
import importlib.resources
import importlib.util
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from service.http.common import json_response
from service.http.openapi import build_openapi
from service.state import (
    metrics_key,
    operations_key,
    queue_key,
    redis_key,
    roles_key,
    runtime_key,
)

routes = web.RouteTableDef()


def _static(name: str) -> bytes:
    return importlib.resources.files("service").joinpath("static", name).read_bytes()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """The process is alive."""
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Redis answers and every role of this process runs."""
    app = request.app
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(app[redis_key].ping(), timeout=2)
        checks["redis"] = "ok"
    except Exception:
        checks["redis"] = "unreachable"
    roles, runtime = app[roles_key], app[runtime_key]
    if roles.worker:
        checks["worker"] = "ok" if runtime.worker_running else "stopped"
    if roles.dispatcher:
        checks["dispatcher"] = "ok" if runtime.dispatcher_running else "stopped"
    ready = all(v == "ok" for v in checks.values())
    body = {"status": "ready" if ready else "not ready", "checks": checks}
    return json_response(body, 200 if ready else 503, None if ready else {"Retry-After": "2"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text; queue gauges are refreshed from Redis first."""
    app = request.app
    m = app[metrics_key]
    queue = app[queue_key]
    for name in app[operations_key]:
        s = await queue.stats(name)
        m.queue_depth.labels(name).set(s.queued)
        m.running.labels(name).set(s.running)
        m.workers.labels(name).set(s.workers)
    resp = web.Response(body=m.render())
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 description, generated from the operations' own schemas."""
    return json_response(build_openapi(request.app[operations_key]))


@routes.get("/docs")
async def docs(request: web.Request) -> web.Response:
    """Swagger UI on the OpenAPI description, every asset served from here."""
    return web.Response(body=_static("docs.html"), content_type="text/html")


# Swagger UI's files, from the swagger-ui-py package (found without importing it: its
# framework adapters pull in Jinja2). A fixed allow-list, like the dashboard's assets.
SWAGGER_FILES = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript"}


@functools.cache
def _swagger(name: str) -> bytes:
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise web.HTTPNotFound()
    return (Path(spec.submodule_search_locations[0]) / "static" / name).read_bytes()


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    """The dashboard."""
    return web.Response(body=_static("index.html"), content_type="text/html")


@routes.get("/console")
async def console_page(request: web.Request) -> web.Response:
    """The operator console."""
    return web.Response(body=_static("console.html"), content_type="text/html")


# The dashboard's assets. A fixed allow-list, so nothing else in the package is reachable.
STATIC_FILES = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
    "console.js": "text/javascript",  # the operator console (/console)
    "console.css": "text/css",
    "acceptd-client.js": "text/javascript",  # the browser client (README "Clients")
    "docs.js": "text/javascript",  # /docs: Swagger UI's settings
}


@routes.get("/static/{name}")
async def static_file(request: web.Request) -> web.Response:
    """One of the dashboard's assets, the browser client or Swagger UI's files."""
    name = request.match_info["name"]
    if name in SWAGGER_FILES:  # cached a day: they change only with the package
        cache = {"Cache-Control": "public, max-age=86400"}
        return web.Response(
            body=_swagger(name), content_type=SWAGGER_FILES[name], charset="utf-8", headers=cache
        )
    content_type = STATIC_FILES.get(name)
    if content_type is None:
        raise web.HTTPNotFound()
    # no-cache: revalidate on each load, so an upgraded service never runs a stale script.
    return web.Response(
        body=_static(name),
        content_type=content_type,
        charset="utf-8",
        headers={"Cache-Control": "no-cache"},
    )
