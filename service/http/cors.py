"""CORS for browsers on other origins (``server.cors_origins``)."""

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
        "Queue-Client",
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
    """Answer preflights and add CORS headers, for configured origins only.

    A listed origin gets its own name back with credentials allowed; ``"*"`` lets any other
    origin read answers, but without credentials (``Access-Control-Allow-Origin: *``).
    ``null`` (sandboxed frames, ``file:`` pages, some redirects) is never allowed: any page
    can make its origin ``null``.
    """
    configured = set(settings.server.cors_origins)
    if not configured:
        return
    listed = configured - {"*", "null"}
    any_origin = "*" in configured

    def allowed_origin(request: web.BaseRequest) -> str | None:
        """What ``Access-Control-Allow-Origin`` says for this request (None: no CORS)."""
        origin = request.headers.get("Origin")
        if origin is None or origin == "null":
            return None
        if origin in listed:
            return origin
        return "*" if any_origin else None

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
        if listed:
            # The answer depends on the Origin: caches must keep one per origin.
            response.headers.add("Vary", "Origin")
        if origin is None:
            return
        response.headers["Access-Control-Allow-Origin"] = origin
        if origin != "*":
            response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Access-Control-Expose-Headers"] = EXPOSED

    app.middlewares.insert(0, preflight)
    app.on_response_prepare.append(add_headers)
