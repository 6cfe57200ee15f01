"""API keys: ``Authorization: Bearer <key>`` maps a request to its client."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from aiohttp import web

from service.http.errors import Problem
from service.runtime.config import Settings

ANONYMOUS = "anonymous"
PUBLIC_PATHS = frozenset({"/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"})
CLIENT = web.RequestKey("client", str)


def client_of(request: web.Request) -> str:
    """The client the request was authenticated as."""
    return request[CLIENT]


def make_authenticator(settings: Settings) -> Callable[[web.Request], None]:
    """A check resolving the request's client (or raising 401); open when no keys exist.

    Run by the guard around every handler (:func:`service.http.errors.guard`), before it.
    """
    clients = [(c.key.encode(), c.name) for c in settings.auth.clients]

    def authenticate(request: web.Request) -> None:
        if not clients:
            request[CLIENT] = ANONYMOUS
            return
        if request.path in PUBLIC_PATHS or request.path.startswith("/static/"):
            return
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

    return authenticate


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if request.method == "GET" and request.path.endswith("/events"):
        # EventSource cannot send headers.
        return request.query.get("access_token") or None
    return None
