"""CORS for browsers on other origins (``server.cors_origins``), credentials included."""

from __future__ import annotations

from aiohttp import web

from service.http.errors import Handler
from service.runtime.config import Settings

EXPOSED = ", ".join(
    (
        "Location",
        "Operation-Location",
        "Retry-After",
        "Preference-Applied",
        "Idempotent-Replayed",
    )
)
ALLOWED_HEADERS = ", ".join(
    (
        "Authorization",
        "Content-Type",
        "Prefer",
        "Idempotency-Key",
        "Queue-Priority",
        "Callback-Url",
        "Callback-Events",
        "Last-Event-ID",
    )
)


def setup_cors(app: web.Application, settings: Settings) -> None:
    """Answer preflights and add CORS headers, for configured origins only."""
    allowed = set(settings.server.cors_origins)
    if not allowed:
        return
    any_origin = "*" in allowed

    def allowed_origin(request: web.BaseRequest) -> str | None:
        origin = request.headers.get("Origin")
        return origin if origin is not None and (any_origin or origin in allowed) else None

    @web.middleware
    async def preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = allowed_origin(request)
        if (
            origin is not None
            and request.method == "OPTIONS"
            and "Access-Control-Request-Method" in request.headers
        ):
            return web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Methods": "GET, POST, DELETE, PATCH, OPTIONS",
                    "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                    "Access-Control-Max-Age": "600",
                },
            )
        return await handler(request)

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        # On prepare, so streamed responses (SSE) get them too.
        origin = allowed_origin(request)
        if origin is None:
            return
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Access-Control-Expose-Headers"] = EXPOSED
        response.headers.add("Vary", "Origin")

    app.middlewares.insert(0, preflight)
    app.on_response_prepare.append(add_headers)
