"""Route registration: every handler guarded, and a last route answering 404 and 405.

Authentication and problem+json errors wrap each handler (:func:`service.http.errors.guard`)
instead of running as an application middleware. Paths no route matches reach the last,
catch-all route, which answers them as problems too: 405 with ``Allow`` when another route
takes the path with other methods, else 404.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aiohttp import web

from service.http.errors import guard

CATCH_ALL = "/{path:.*}"


def add_guarded(
    app: web.Application,
    routes: Iterable[web.AbstractRouteDef],
    authenticate: Callable[[web.Request], None],
) -> None:
    """Register route definitions with their handlers guarded."""
    defs: list[web.AbstractRouteDef] = []
    for d in routes:
        if not isinstance(d, web.RouteDef):  # pragma: no cover - no static routes here
            raise TypeError(f"unexpected route definition {d!r}")
        defs.append(web.RouteDef(d.method, d.path, guard(d.handler, authenticate), d.kwargs))
    app.router.add_routes(defs)


def add_unmatched(app: web.Application, authenticate: Callable[[web.Request], None]) -> None:
    """The catch-all route: register it after every other route."""
    app.router.add_route("*", CATCH_ALL, guard(_unmatched, authenticate))


async def _unmatched(request: web.Request) -> web.StreamResponse:
    own = request.match_info.route.resource
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not own:
            _, methods = await resource.resolve(request)
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


__all__ = ["add_guarded", "add_unmatched"]
