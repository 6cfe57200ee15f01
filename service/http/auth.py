"""API keys: ``Authorization: Bearer <key>`` maps a request to its client."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from aiohttp import web

from service.http.errors import Problem
from service.runtime.config import Settings
from service.state import settings_key

ANONYMOUS = "anonymous"
PUBLIC_PATHS = frozenset(
    {"/", "/console", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"}
)
CLIENT = web.RequestKey("client", str)
ADMIN = web.RequestKey("admin", bool)


def client_of(request: web.Request) -> str:
    """The client the request was authenticated as."""
    return request[CLIENT]


def is_admin(request: web.Request) -> bool:
    """The caller is an operator (``auth.clients[].admin``)."""
    return bool(request.get(ADMIN, False))


def listed_clients(request: web.Request) -> list[str]:
    """Whose requests or endpoints a listing shows: the caller's own; an operator may ask for
    one client's with ``?client=NAME`` or every configured client's with ``?client=*``."""
    own = client_of(request)
    asked = request.query.get("client")
    if not asked or asked == own:
        return [own]
    if not is_admin(request):
        raise Problem(403, "only an operator (auth.clients[].admin) may list other clients'",
                      slug="forbidden", parameter="client")  # fmt: skip
    names = [c.name for c in request.app[settings_key].auth.clients] or [own]
    if asked == "*":
        return names
    if asked not in names:
        raise Problem(400, f"there is no client named {asked!r}", slug="invalid-query",
                      parameter="client")  # fmt: skip
    return [asked]


def acting_client(request: web.Request) -> str:
    """Whose endpoint or delivery a webhook route acts on: the caller's, or for an operator
    the client named by ``?client=``."""
    asked = request.query.get("client")
    if not asked or asked == "*":
        return client_of(request)
    return listed_clients(request)[0]


def make_authenticator(settings: Settings) -> Callable[[web.Request], None]:
    """A check resolving the request's client (or raising 401); open when no keys exist.

    Run by the guard around every handler (:func:`service.http.errors.guard`), before it.
    """
    clients = [(c.key.encode(), c.name) for c in settings.auth.clients]
    admins = frozenset(c.name for c in settings.auth.clients if c.admin)

    def authenticate(request: web.Request) -> None:
        if not clients:
            request[CLIENT] = ANONYMOUS
            request[ADMIN] = False  # one anonymous client: everything is its own anyway
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
        request[ADMIN] = name in admins

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
