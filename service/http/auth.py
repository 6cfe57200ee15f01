"""API keys: ``Authorization: Bearer <key>`` maps a request to its client."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable
from urllib.parse import urlsplit

from aiohttp import web

from service.http.errors import Problem
from service.runtime.config import ServerSettings, Settings
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
    Keys are matched by their SHA-256 digest (``key`` or ``key_sha256`` in the config): the
    presented key is hashed once and looked up, whatever the number of clients.
    """
    clients = {c.key_digest(): c.name for c in settings.auth.clients}
    admins = frozenset(c.name for c in settings.auth.clients if c.admin)
    if not clients:
        return _open_mode(settings.server)

    def authenticate(request: web.Request) -> None:
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
        digest = hashlib.sha256(presented.encode()).digest()
        name = clients.get(digest)
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


def _open_mode(server: ServerSettings) -> Callable[[web.Request], None]:
    """No keys: one anonymous client, served only under a loopback or the public host name.

    A browser page on another site can make its own host name resolve to 127.0.0.1 (DNS
    rebinding) and then read this open API as same-origin; its requests still carry that
    host name in ``Host``, so they are refused (421) here.
    """
    public = urlsplit(server.public_url).hostname if server.public_url else None
    # The usual values, answered without parsing.
    usual = frozenset(
        f"{name}{port}"
        for name in ("127.0.0.1", "localhost", "[::1]")
        for port in ("", f":{server.port}")
    )

    def authenticate(request: web.Request) -> None:
        host = request.headers.get("Host")
        if host is not None and host not in usual and not _served_host(host, public):
            raise Problem(
                421,
                f"this service has no API keys, so it answers only to loopback host names"
                f"{' and ' + public if public else ''}, not {host[:100]!r}",
                slug="misdirected-request",
            )
        request[CLIENT] = ANONYMOUS

    return authenticate


def _served_host(value: str, public: str | None) -> bool:
    """Whether a ``Host`` value names this machine's loopback, or the public host name."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, port = value[1:].partition("]")
        port = port.removeprefix(":") if port.startswith(":") or not port else "x"
    else:
        name, _, port = value.partition(":")
    if port and not port.isdigit():
        return False
    name = name.removesuffix(".")
    if name == "localhost" or (public is not None and name == public):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if request.method == "GET" and request.path.endswith("/events"):
        # EventSource cannot send headers.
        return request.query.get("access_token") or None
    return None
