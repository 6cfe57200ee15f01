"""API keys: ``Authorization: Bearer <key>`` maps a request to its client."""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Middleware

from service.config import Settings
from service.errors import Handler, Problem

ANONYMOUS = "anonymous"
PUBLIC_PATHS = frozenset({"/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"})
CLIENT = web.RequestKey("client", str)


def client_of(request: web.Request) -> str:
    """The client the request was authenticated as."""
    return request[CLIENT]


def make_auth_middleware(settings: Settings) -> Middleware:
    """A middleware resolving the client; open (one anonymous client) when no keys exist."""
    clients = [(c.key.encode(), c.name) for c in settings.auth.clients]

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not clients:
            request[CLIENT] = ANONYMOUS
            return await handler(request)
        if request.path in PUBLIC_PATHS or request.path.startswith("/static/"):
            return await handler(request)
        presented = _bearer(request)
        if presented is None:
            raise Problem(
                401,
                "this endpoint needs an API key: Authorization: Bearer <key>",
                slug="unauthorized",
                headers={"WWW-Authenticate": 'Bearer realm="acceptd"'},
            )
        name = None
        for key, client in clients:
            # Compare against every key so timing does not reveal which one nearly matched.
            if hmac.compare_digest(key, presented.encode()):
                name = client
        if name is None:
            raise Problem(
                401,
                "the API key is not valid",
                slug="unauthorized",
                headers={"WWW-Authenticate": 'Bearer realm="acceptd", error="invalid_token"'},
            )
        request[CLIENT] = name
        return await handler(request)

    return auth_middleware


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if request.method == "GET" and request.path.endswith("/events"):
        # EventSource cannot send headers.
        return request.query.get("access_token") or None
    return None
