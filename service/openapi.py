"""The OpenAPI 3.1 description, generated from the operations' own declarations."""

from __future__ import annotations

from typing import Any

from service.registry import Operation

PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": PROBLEM}},
    }


def _json(
    schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        out["headers"] = headers
    return out


def _header(description: str, schema_type: str = "string") -> dict[str, Any]:
    return {"description": description, "schema": {"type": schema_type}}


ACCEPTED_HEADERS = {
    "Location": _header("The status monitor's absolute URL"),
    "Operation-Location": _header("The status monitor's absolute URL"),
    "Retry-After": _header("Seconds to wait before polling", "integer"),
    "Preference-Applied": _header("respond-async when that preference was honoured"),
}

REQUEST_ID = {
    "name": "request_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-z]{34}$"},
}

SUBMIT_HEADERS = [
    {"name": "Prefer", "in": "header", "schema": {"type": "string"},
     "description": "respond-async to get 202 at once; wait=N bounds a synchronous wait (RFC 7240)"},
    {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "maxLength": 255},
     "description": "Replays return the existing request for 24 h"},
    {"name": "Queue-Priority", "in": "header",
     "schema": {"type": "integer", "minimum": -10, "maximum": 10, "default": 0}},
    {"name": "Callback-Url", "in": "header", "schema": {"type": "string", "format": "uri"},
     "description": "A per-request webhook, signed with the client's default secret"},
    {"name": "Callback-Events", "in": "header", "schema": {"type": "string"},
     "description": "Comma list of succeeded, failed, canceled, running"},
]  # fmt: skip

LINK = {
    "type": "object",
    "required": ["rel", "href", "method"],
    "properties": {
        "rel": {"type": "string"},
        "href": {"type": "string"},
        "method": {"type": "string"},
    },
}

TIME = {"type": ["string", "null"], "format": "date-time"}

MONITOR = {
    "type": "object",
    "required": ["id", "operation", "status", "links"],
    "properties": {
        "id": {"type": "string"},
        "operation": {"type": "string"},
        "status": {"enum": ["queued", "running", "succeeded", "failed", "canceled"]},
        "position": {"type": ["integer", "null"], "description": "Requests ahead (0 = next)"},
        "eta_seconds": {"type": ["number", "null"]},
        "progress": {
            "type": ["object", "null"],
            "properties": {"percent": {"type": "number"}, "message": {"type": ["string", "null"]}},
        },
        "attempt": {"type": "integer"},
        "priority": {"type": "integer"},
        "created_at": TIME,
        "started_at": TIME,
        "finished_at": TIME,
        "updated_at": TIME,
        "expires_at": TIME,
        "cancel_requested": {"type": "boolean"},
        "error": {"oneOf": [PROBLEM, {"type": "null"}]},
        "links": {"type": "array", "items": {"$ref": "#/components/schemas/Link"}},
    },
}

PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
            },
        },
        "request_id": {"type": "string"},
        "request_status": {"type": "string"},
    },
    "additionalProperties": True,
}

MONITOR_REF = {"$ref": "#/components/schemas/StatusMonitor"}


def _operation_paths(op: Operation) -> dict[str, Any]:
    name = op.name
    output = op.spec.output_schema or {}
    submit = {
        "operationId": f"submit_{name.replace('-', '_')}",
        "summary": op.spec.summary or f"Submit a {name} request",
        "description": op.settings.description or op.spec.description,
        "tags": [name],
        "parameters": SUBMIT_HEADERS,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": op.spec.input_schema}},
        },
        "responses": {
            "201": _json(output, "Finished synchronously: the result",
                         {"Location": _header("The final resource's absolute URL")}),
            "202": _json(MONITOR_REF, "Accepted: the status monitor", ACCEPTED_HEADERS),
            "400": _problem("Malformed JSON or header"),
            "401": _problem("Missing or invalid API key"),
            "404": _problem("Unknown operation"),
            "413": _problem("Body too large"),
            "415": _problem("Not application/json"),
            "422": _problem("Input does not match the schema, or the handler rejected it"),
            "500": _problem("The request failed"),
            "503": _problem("The queue is full"),
        },
    }  # fmt: skip
    result = {
        "operationId": f"get_{name.replace('-', '_')}_result",
        "summary": f"The result of a {name} request",
        "tags": [name],
        "parameters": [REQUEST_ID],
        "responses": {
            "200": _json(output, "The result"),
            "404": _problem("Not ready (with request_status and position) or unknown"),
            "410": _problem("The request failed or was canceled"),
        },
    }
    return {f"/v1/{name}": {"post": submit}, f"/v1/{name}/{{request_id}}": {"get": result}}


def build_openapi(operations: dict[str, Operation]) -> dict[str, Any]:
    """The whole description."""
    paths: dict[str, Any] = {
        "/v1/operations": {"get": {
            "operationId": "list_operations", "summary": "Operations and their input schemas",
            "responses": {"200": _json({"type": "object"}, "The operations")}}},
        "/v1/queue": {"get": {
            "operationId": "queue_stats", "summary": "Per-operation queue statistics",
            "responses": {"200": _json({"type": "object"}, "Queued, running, workers, throughput")}}},
        "/v1/queue/requests": {"get": {
            "operationId": "list_requests", "summary": "The caller's requests, newest first",
            "parameters": [
                {"name": "status", "in": "query", "schema": MONITOR["properties"]["status"]},  # type: ignore[index]
                {"name": "operation", "in": "query", "schema": {"enum": list(operations)}},
                {"name": "limit", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
                {"name": "cursor", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {
                "200": _json({"type": "object", "properties": {
                    "items": {"type": "array", "items": MONITOR_REF},
                    "next": {"type": ["string", "null"]}}}, "A page of requests"),
                "400": _problem("Invalid query parameter")}}},
        "/v1/queue/requests/{request_id}": {
            "get": {"operationId": "get_status", "summary": "The status monitor",
                    "parameters": [REQUEST_ID],
                    "responses": {"200": _json(MONITOR_REF, "The request's state"),
                                  "404": _problem("Unknown or purged")}},
            "delete": {"operationId": "cancel", "summary": "Cancel a request",
                       "parameters": [REQUEST_ID],
                       "responses": {"200": _json(MONITOR_REF, "Canceled"),
                                     "202": _json(MONITOR_REF, "Cancel requested (running)"),
                                     "404": _problem("Unknown"),
                                     "409": _problem("Already finished")}}},
        "/healthz": {"get": {"operationId": "healthz", "summary": "Liveness",
                             "responses": {"200": _json({"type": "object"}, "Alive")}}},
        "/readyz": {"get": {"operationId": "readyz", "summary": "Readiness",
                            "responses": {"200": _json({"type": "object"}, "Ready"),
                                          "503": _json({"type": "object"}, "Not ready")}}},
        "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics",
                             "responses": {"200": {"description": "Prometheus text",
                                                   "content": {"text/plain": {}}}}}},
    }  # fmt: skip
    for op in operations.values():
        paths.update(_operation_paths(op))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "acceptd",
            "version": "1",
            "description": "Asynchronous request-reply (202 Accepted) for every operation.",
        },
        "paths": paths,
        "components": {
            "schemas": {"Problem": PROBLEM_SCHEMA, "StatusMonitor": MONITOR, "Link": LINK},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }
