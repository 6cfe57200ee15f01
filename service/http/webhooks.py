"""The webhook endpoints API (CONTRACT.md section 6), over the ``webhooks`` package."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from service.http.auth import acting_client, client_of, listed_clients
from service.http.body import decode, read_raw, require_json
from service.http.common import (
    base_url,
    decode_cursor,
    encode_cursor,
    json_response,
    page_limit,
)
from service.http.errors import Problem
from service.state import settings_key, webhook_store_key
from webhooks import (
    check_url,
)

routes = web.RouteTableDef()

FIELDS = {"url", "events", "operations", "description"}
MAX_BODY = 64 * 1024
ENDPOINTS_PAGE = 100  # the default and the most per page: a client's whole list by default
DELIVERIES_PAGE = (50, 200)


async def read_object(request: web.Request, allowed: set[str]) -> dict[str, Any]:
    """A JSON object body with only ``allowed`` members (problem+json otherwise)."""
    require_json(request)
    raw = await read_raw(request, MAX_BODY)
    body = decode(raw, exact_numbers=False)[0] if raw.strip() else {}
    if not isinstance(body, dict):
        raise Problem(422, "the body must be a JSON object", slug="invalid-input")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise Problem(
            422,
            f"unknown member {unknown[0]!r}",
            slug="invalid-input",
            errors=[{"path": f"/{k}", "message": "unknown member"} for k in unknown],
        )
    for name in ("events", "operations"):
        value = body.get(name)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            raise field_problem(name, "expected a list of strings")
    for name in ("url", "description"):
        if name in body and not isinstance(body[name], str):
            raise field_problem(name, "expected a string")
    return body


def field_problem(name: str, message: str) -> Problem:
    """A 422 naming one member of the body."""
    return Problem(
        422,
        f"{name}: {message}",
        slug="invalid-input",
        errors=[{"path": f"/{name}", "message": message}],
    )


async def check_target(request: web.Request, url: str) -> None:
    """Refuse targets resolving to private, loopback or reserved addresses.

    ``TargetRefused`` (like the package's other errors) becomes problem+json in
    :mod:`service.http.errors`.
    """
    await check_url(url, request.app[settings_key].webhooks.allow_networks)


@routes.post("/v1/webhooks/endpoints")
async def create_endpoint(request: web.Request) -> web.Response:
    """Register an endpoint; the response shows its secret, once."""
    body = await read_object(request, FIELDS)
    url = body.get("url")
    if not url:
        raise Problem(422, "url is required", slug="invalid-input",
                      errors=[{"path": "/url", "message": "required"}])  # fmt: skip
    await check_target(request, url)
    store = request.app[webhook_store_key]
    endpoint = await store.create_endpoint(
        client_of(request),
        url,
        events=body.get("events"),
        operations=body.get("operations"),
        description=body.get("description") or "",
    )
    location = f"{base_url(request)}/v1/webhooks/endpoints/{endpoint.id}"
    return json_response(endpoint.to_json(), 201, {"Location": location})


@routes.get("/v1/webhooks/endpoints")
async def list_endpoints(request: web.Request) -> web.Response:
    """The client's endpoints, oldest first, a page at a time (``limit``, ``cursor``)."""
    limit = page_limit(request, ENDPOINTS_PAGE, ENDPOINTS_PAGE)
    cursor = request.query.get("cursor")
    clients = listed_clients(request)
    store = request.app[webhook_store_key]
    if len(clients) > 1:  # an operator's ?client=*: each client's first page, saying whose
        items: list[dict[str, Any]] = []
        for client in clients:
            page = await store.list_endpoints(client, None, limit)
            items.extend({**e.to_json(), "client": client} for e in page.items)
        return json_response({"items": items[:limit], "next": None})
    page = await store.list_endpoints(clients[0], decode_cursor(cursor) if cursor else None, limit)
    return json_response(
        {
            "items": [e.to_json() for e in page.items],
            "next": encode_cursor(page.next) if page.next else None,
        }
    )


@routes.get("/v1/webhooks/endpoints/{endpoint_id}")
async def get_endpoint(request: web.Request) -> web.Response:
    """One endpoint."""
    eid = request.match_info["endpoint_id"]
    endpoint = await request.app[webhook_store_key].get_endpoint(acting_client(request), eid)
    return json_response(endpoint.to_json())


@routes.patch("/v1/webhooks/endpoints/{endpoint_id}")
async def update_endpoint(request: web.Request) -> web.Response:
    """Change url, events, operations, description or ``disabled`` (re-enable)."""
    eid = request.match_info["endpoint_id"]
    body = await read_object(request, FIELDS | {"disabled"})
    if "disabled" in body and not isinstance(body["disabled"], bool):
        raise Problem(422, "disabled must be true or false", slug="invalid-input")
    if body.get("url"):
        await check_target(request, body["url"])
    endpoint = await request.app[webhook_store_key].update_endpoint(
        acting_client(request),
        eid,
        url=body.get("url"),
        events=body.get("events"),
        operations=body.get("operations"),
        description=body.get("description"),
        disabled=body.get("disabled"),
    )
    return json_response(endpoint.to_json())


@routes.delete("/v1/webhooks/endpoints/{endpoint_id}")
async def delete_endpoint(request: web.Request) -> web.Response:
    """Remove an endpoint."""
    eid = request.match_info["endpoint_id"]
    await request.app[webhook_store_key].delete_endpoint(acting_client(request), eid)
    return web.Response(status=204)


@routes.post("/v1/webhooks/endpoints/{endpoint_id}/rotate-secret")
async def rotate_secret(request: web.Request) -> web.Response:
    """A new secret; the old one keeps signing alongside it for 24 h."""
    eid = request.match_info["endpoint_id"]
    endpoint = await request.app[webhook_store_key].rotate_secret(acting_client(request), eid)
    return json_response(endpoint.to_json())


@routes.get("/v1/webhooks/endpoints/{endpoint_id}/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    """The endpoint's delivery attempt log, newest first."""
    eid = request.match_info["endpoint_id"]
    limit = page_limit(request, *DELIVERIES_PAGE)
    store = request.app[webhook_store_key]
    items = await store.list_deliveries(acting_client(request), eid, limit=limit)
    return json_response({"items": [d.to_json() for d in items]})


@routes.post("/v1/webhooks/deliveries/{delivery_id}/redeliver")
async def redeliver(request: web.Request) -> web.Response:
    """Send a delivery again now (its retry schedule starts over)."""
    did = request.match_info["delivery_id"]
    delivery = await request.app[webhook_store_key].redeliver(acting_client(request), did)
    return json_response(delivery.to_json(), 202)


@routes.get("/v1/webhooks/secret")
async def default_secret(request: web.Request) -> web.Response:
    """The client's default secret, which signs per-request ``Callback-Url`` webhooks."""
    secret = await request.app[webhook_store_key].default_secret(client_of(request))
    return json_response({"secret": secret})
