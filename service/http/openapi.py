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

QUEUE_CLIENT = _header(
    "Only on an operator's retry: the client the new request was made for (whose it is)"
)

TIMELINE_ENTRY = {
    "type": "object",
    "required": ["at", "event", "status", "attempt", "source"],
    "properties": {
        "at": {"type": "string", "format": "date-time"},
        "event": {"type": "string", "enum": ["created", "started", "progress", "requeued",
                                             "cancel_requested", "succeeded", "failed",
                                             "canceled"]},
        "status": {"type": "string", "description": "The request's status after it"},
        "attempt": {"type": "integer"},
        "source": {"type": "string", "enum": ["events", "monitor"],
                   "description": "A stored event, or the record's timestamps"},
        "seq": {"type": "integer", "description": "A stored event's number (its id in the "
                                                  "request's event stream)"},
        "progress": {"type": "object"},
        "error": {"type": "object", "description": "A failed or canceled end: type and title"},
    },
}  # fmt: skip

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
    {"name": "Queue-Timeout", "in": "header",
     "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": 31536000},
     "description": "Seconds the request may wait to start; past it, it fails with "
                    "urn:acceptd:problem:queue-timeout and never runs"},
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

CLIENT_QUERY = {
    "name": "client",
    "in": "query",
    "schema": {"type": "string"},
    "description": "Operators (auth.clients[].admin) only: one client's, or * for "
    "every client's (items then carry `client`); others get 403",
}
ACTING_CLIENT = {
    "name": "client",
    "in": "query",
    "schema": {"type": "string"},
    "description": "Operators (auth.clients[].admin) only: act on this client's endpoint or "
    "delivery; others get 403",
}
_COUNTS = {"type": "array", "items": {"type": "integer"}}
_PERCENTILES = {"type": "object", "properties": {
    "p50": {"type": ["number", "null"]}, "p95": {"type": ["number", "null"]},
    "count": {"type": "integer"}}}  # fmt: skip
HISTORY = {"type": "object", "properties": {
    "window_seconds": {"type": "integer"},
    "step_seconds": {"type": "integer", "enum": [1, 60]},
    "operations": {"type": "array", "items": {"type": "object", "properties": {
        "operation": {"type": "string"},
        "time": {**_COUNTS, "description": "Each bucket's start, unix seconds"},
        "submitted": _COUNTS, "succeeded": _COUNTS, "failed": _COUNTS, "canceled": _COUNTS,
        "queue_depth": {"type": "array", "items": {"type": ["integer", "null"]},
                        "description": "The last sample in or before the bucket"},
        "totals": {"type": "object", "additionalProperties": {"type": "integer"}},
        "wait_ms": _PERCENTILES, "run_ms": _PERCENTILES}}}}}  # fmt: skip
PROCESS = {"type": "object", "required": ["id", "kind", "alive", "heartbeat"], "properties": {
    "id": {"type": "string"}, "kind": {"enum": ["worker", "dispatcher"]},
    "host": {"type": "string"}, "pid": {"type": "integer"},
    "operations": {"type": "array", "items": {"type": "string"}},
    "concurrency": {"type": "integer"},
    "running": {"type": "array", "items": {"type": "object", "properties": {
        "id": {"type": "string"}, "operation": {"type": "string"},
        "age_seconds": {"type": "number"}}}},
    "sending": {"type": "integer", "description": "Dispatchers: deliveries in flight"},
    "heartbeat": {"type": "integer", "description": "Last announcement, unix ms"},
    "alive": {"type": "boolean", "description": "Heard from within the last 15 s"}}}  # fmt: skip

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
        "attempt": {"type": "integer", "description": "Runs so far (lost ones included)"},
        "lost": {
            "type": "integer",
            "description": "Runs lost with their worker (lease expired); they use no attempt",
        },
        "priority": {"type": "integer"},
        "created_at": TIME,
        "started_at": TIME,
        "finished_at": TIME,
        "updated_at": TIME,
        "expires_at": TIME,
        "cancel_requested": {"type": "boolean"},
        "error": {"oneOf": [PROBLEM, {"type": "null"}]},
        "links": {"type": "array", "items": {"$ref": "#/components/schemas/Link"}},
        "retry_of": {"type": "string", "description": "Only on a retry: the request it retries"},
        "resourceLocation": {
            "type": "string",
            "format": "uri",
            "description": "Only once succeeded: the final resource's absolute URL",
        },
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
            "429": _problem("Too many submissions (rate limit) or synchronous waits at once"),
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
    bulk = {
        "operationId": f"submit_{name.replace('-', '_')}_batch",
        "summary": f"Submit up to 1,000 {name} requests at once",
        "description": "Bulk submit, always asynchronous. The headers apply to every item unless "
        "the item sets its own; the Idempotency-Key header names each item `<key>#<index>`. "
        "Each item is queued or refused on its own: the answer lists, in order, each one's "
        "status monitor (`replayed: true` on an idempotent replay) or its problem details "
        "(with `pointer` for a bad item, `retry_after` when full or rate-limited).",
        "tags": [name],
        "parameters": [h for h in SUBMIT_HEADERS if h["name"] != "Prefer"],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _batch_schema(op.spec.input_schema)}},
        },
        "responses": {
            "202": _json(BATCH_ANSWER, "Every item's monitor or problem, in order",
                         {"Preference-Applied": ACCEPTED_HEADERS["Preference-Applied"]}),
            "400": _problem("Malformed JSON or header, or not 1 to 1,000 requests"),
            "401": _problem("Missing or invalid API key"),
            "404": _problem("Unknown operation"),
            "413": _problem("Body over server.max_batch_bytes"),
            "415": _problem("Not application/json"),
        },
    }  # fmt: skip
    return {
        f"/v1/{name}": {"post": submit},
        f"/v1/{name}/batch": {"post": bulk},
        f"/v1/{name}/{{request_id}}": {"get": result},
    }


def _batch_schema(input_schema: dict[str, Any]) -> dict[str, Any]:
    item = {
        "type": "object",
        "required": ["input"],
        "additionalProperties": False,
        "properties": {
            "input": input_schema,
            "priority": {"type": "integer", "minimum": -10, "maximum": 10},
            "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 255},
            "queue_timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 31536000},
            "callback_url": {"type": "string", "format": "uri"},
        },
    }
    return {
        "type": "object",
        "required": ["requests"],
        "additionalProperties": False,
        "properties": {
            "requests": {"type": "array", "minItems": 1, "maxItems": 1000, "items": item}
        },
    }


BATCH_ANSWER = {
    "type": "object",
    "required": ["items"],
    "properties": {"items": {"type": "array", "items": {"oneOf": [MONITOR_REF, PROBLEM]}}},
}


ENDPOINT_ID = {"name": "endpoint_id", "in": "path", "required": True, "schema": {"type": "string"}}
EVENT_TYPES = {
    "enum": ["request.running", "request.succeeded", "request.failed", "request.canceled"]
}
ENDPOINT = {
    "type": "object",
    "required": ["id", "url", "events", "operations", "description", "created_at", "disabled"],
    "properties": {
        "id": {"type": "string"},
        "url": {"type": "string", "format": "uri"},
        "events": {"type": "array", "items": EVENT_TYPES},
        "operations": {"type": "array", "items": {"type": "string"}},
        "description": {"type": "string"},
        "created_at": TIME,
        "disabled": {"type": "boolean"},
        "disabled_reason": {"type": ["string", "null"]},
        "secret": {
            "type": ["string", "null"],
            "description": "Shown on creation and rotation only",
        },
    },
}
ENDPOINT_INPUT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "url": {"type": "string", "format": "uri"},
        "events": {"type": "array", "items": EVENT_TYPES},
        "operations": {"type": "array", "items": {"type": "string"}},
        "description": {"type": "string"},
    },
}
DELIVERY = {
    "type": "object",
    "additionalProperties": True,
    "properties": {"id": {"type": "string"}, "status": {"type": "string"}},
}
SSE = {
    "description": "A text/event-stream (see CONTRACT.md section 5)",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}
LAST_EVENT_ID = {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}}
ACCESS_TOKEN = {
    "name": "access_token",
    "in": "query",
    "schema": {"type": "string"},
    "description": "The API key, for EventSource (which cannot send headers)",
}


def _webhook_paths() -> dict[str, Any]:
    ep_ref = {"$ref": "#/components/schemas/WebhookEndpoint"}
    return {
        "/v1/webhooks/endpoints": {
            "post": {"operationId": "create_webhook_endpoint", "summary": "Register a webhook endpoint",
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {**ENDPOINT_INPUT, "required": ["url"]}}}},
                     "responses": {"201": _json(ep_ref, "Created, with its secret"),
                                   "400": _problem("Malformed JSON"), "415": _problem("Not JSON"),
                                   "409": _problem("The client has webhooks.max_endpoints_per_client endpoints already (too-many-endpoints, with limit)"),
                                   "422": _problem("Invalid field or refused target")}},
            "get": {"operationId": "list_webhook_endpoints", "summary": "The client's endpoints, oldest first",
                    "parameters": [
                        {"name": "limit", "in": "query",
                         "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 100}},
                        {"name": "cursor", "in": "query", "schema": {"type": "string"},
                         "description": "The next of the previous page"}, CLIENT_QUERY],
                    "responses": {"200": _json({"type": "object", "properties": {
                                      "items": {"type": "array", "items": ep_ref},
                                      "next": {"type": ["string", "null"]}}}, "A page of endpoints"),
                                  "400": _problem("Invalid query parameter")}},
        },
        "/v1/webhooks/endpoints/{endpoint_id}": {
            "get": {"operationId": "get_webhook_endpoint", "parameters": [ENDPOINT_ID, ACTING_CLIENT], "summary": "One endpoint",
                    "responses": {"200": _json(ep_ref, "The endpoint"), "404": _problem("Unknown")}},
            "patch": {"operationId": "update_webhook_endpoint", "parameters": [ENDPOINT_ID, ACTING_CLIENT], "summary": "Change an endpoint",
                      "requestBody": {"required": True, "content": {"application/json": {"schema": {**ENDPOINT_INPUT, "properties": {**ENDPOINT_INPUT["properties"], "disabled": {"type": "boolean"}}}}}},  # type: ignore[dict-item]
                      "responses": {"200": _json(ep_ref, "The endpoint"), "404": _problem("Unknown"), "422": _problem("Invalid field")}},
            "delete": {"operationId": "delete_webhook_endpoint", "parameters": [ENDPOINT_ID, ACTING_CLIENT], "summary": "Remove an endpoint",
                       "responses": {"204": {"description": "Removed"}, "404": _problem("Unknown")}},
        },
        "/v1/webhooks/endpoints/{endpoint_id}/rotate-secret": {
            "post": {"operationId": "rotate_webhook_secret", "parameters": [ENDPOINT_ID, ACTING_CLIENT],
                     "summary": "A new secret; the old one signs alongside it for 24 h",
                     "responses": {"200": _json(ep_ref, "With the new secret"), "404": _problem("Unknown")}}},
        "/v1/webhooks/endpoints/{endpoint_id}/deliveries": {
            "get": {"operationId": "list_webhook_deliveries", "parameters": [ENDPOINT_ID, ACTING_CLIENT,
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}}],
                    "summary": "The delivery attempt log",
                    "responses": {"200": _json({"type": "object", "properties": {"items": {"type": "array", "items": DELIVERY}}}, "Deliveries"),
                                  "400": _problem("Invalid query parameter"), "404": _problem("Unknown")}}},
        "/v1/webhooks/deliveries/{delivery_id}/redeliver": {
            "post": {"operationId": "redeliver_webhook", "summary": "Send a delivery again",
                     "parameters": [{"name": "delivery_id", "in": "path", "required": True, "schema": {"type": "string"}}, ACTING_CLIENT],
                     "responses": {"202": _json(DELIVERY, "Queued again"), "404": _problem("Unknown")}}},
        "/v1/webhooks/secret": {
            "get": {"operationId": "get_default_webhook_secret", "summary": "The secret that signs Callback-Url webhooks",
                    "responses": {"200": _json({"type": "object", "properties": {"secret": {"type": "string"}}}, "The secret")}}},
    }  # fmt: skip


def build_openapi(operations: dict[str, Operation]) -> dict[str, Any]:
    """The whole description."""
    paths: dict[str, Any] = {
        "/v1/operations": {"get": {
            "operationId": "list_operations", "summary": "Operations and their input schemas",
            "responses": {"200": _json({"type": "object"}, "The operations")}}},
        "/v1/queue": {"get": {
            "operationId": "queue_stats", "summary": "Per-operation queue statistics",
            "responses": {"200": _json({"type": "object"}, "Queued, running, workers, throughput")}}},
        "/v1/queue/history": {"get": {
            "operationId": "queue_history",
            "summary": "Per operation: counts per time bucket, queue depth, wait and run times",
            "description": "From fixed-size rings the service keeps in Redis: 1 s buckets up to "
                           "a 15 min window, 60 s buckets up to 24 h. p50/p95 are estimated from "
                           "per-minute histograms covering the window.",
            "parameters": [
                {"name": "operation", "in": "query", "schema": {"enum": list(operations)},
                 "description": "Only this operation (default: every one)"},
                {"name": "window", "in": "query",
                 "schema": {"type": "string", "pattern": "^[0-9]+[smhd]?$", "default": "15m"},
                 "description": "60 s to 24 h: seconds, or like 15m, 1h, 24h"},
            ],
            "responses": {
                "200": _json(HISTORY, "Each operation's series over the window"),
                "400": _problem("Invalid query parameter")}}},
        "/v1/whoami": {"get": {
            "operationId": "whoami", "summary": "The caller's client, and whether an operator",
            "responses": {"200": _json({"type": "object", "properties": {
                "client": {"type": "string"}, "admin": {"type": "boolean"},
                "clients": {"type": "array", "items": {"type": "string"},
                            "description": "Operators: every configured client"}}},
                "Who the key belongs to")}}},
        "/v1/queue/workers": {"get": {
            "operationId": "list_workers",
            "summary": "Worker and dispatcher processes heard from in the last hour",
            "responses": {"200": _json({"type": "object", "properties": {
                "items": {"type": "array", "items": PROCESS}}}, "The processes")}}},
        "/v1/queue/requests": {"get": {
            "operationId": "list_requests", "summary": "The caller's requests, newest first",
            "parameters": [
                {"name": "status", "in": "query", "schema": MONITOR["properties"]["status"]},  # type: ignore[index]
                {"name": "operation", "in": "query", "schema": {"enum": list(operations)}},
                {"name": "limit", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
                {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                CLIENT_QUERY,
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
        "/v1/queue/requests/{request_id}/deliveries": {
            "get": {"operationId": "list_request_deliveries",
                    "summary": "The request's webhook deliveries, newest first",
                    "description": "To its client's endpoints and its Callback-Url, each with its "
                                   "attempt log; the newest 200 are indexed, kept like the "
                                   "deliveries themselves (7 days once settled)",
                    "parameters": [REQUEST_ID, {"name": "limit", "in": "query", "schema": {
                        "type": "integer", "minimum": 1, "maximum": 200, "default": 50}}],
                    "responses": {"200": _json({"type": "object", "properties": {
                        "items": {"type": "array", "items": DELIVERY}}}, "Deliveries"),
                                  "400": _problem("Invalid query parameter"),
                                  "404": _problem("Unknown or purged")}}},
        "/v1/queue/requests/{request_id}/timeline": {
            "get": {"operationId": "get_timeline", "summary": "The request's event timeline",
                    "description": "Oldest first. From its stored events where any remain (kept "
                                   "for resuming streams: the request's last 64 once a stream was "
                                   "opened on it, its client's while an all-requests stream is "
                                   "open), else, and for what they miss, from the record's "
                                   "timestamps (source: monitor). The monitor's access rules; an "
                                   "operator's answer carries client",
                    "parameters": [REQUEST_ID],
                    "responses": {"200": _json({"type": "object", "required": ["id", "status", "items"],
                                                "properties": {
                        "id": {"type": "string"}, "status": {"type": "string"},
                        "client": {"type": "string", "description": "Operators only: whose"},
                        "items": {"type": "array", "items": TIMELINE_ENTRY}}}, "The timeline"),
                                  "404": _problem("Unknown or purged")}}},
        "/v1/queue/requests/{request_id}/input": {
            "get": {"operationId": "get_input", "summary": "The request's input, while kept",
                    "description": "Kept while queued or running and, for a retry, once failed "
                                   "or canceled, until the record expires; a succeeded request's "
                                   "input is dropped (kept: false)",
                    "parameters": [REQUEST_ID],
                    "responses": {"200": _json({"type": "object", "properties": {
                        "kept": {"type": "boolean"}, "input": {}}}, "The input"),
                                  "404": _problem("Unknown or purged")}}},
        "/v1/queue/requests/{request_id}/retry": {
            "post": {"operationId": "retry", "summary": "Retry a failed or canceled request",
                     "description": "A new request with the same operation, input and priority "
                                    "(its monitor's retry_of names this one), answered exactly "
                                    "like a submit: 202, or 201 when done within the wait",
                     "parameters": [REQUEST_ID] + [h for h in SUBMIT_HEADERS
                                                   if h["name"] != "Queue-Priority"],
                     "responses": {
                         "201": _json({}, "Finished synchronously: the result",
                                      {"Location": _header("The final resource's absolute URL"),
                                       "Queue-Client": QUEUE_CLIENT}),
                         "202": _json(MONITOR_REF, "Accepted: the new request's status monitor",
                                      {**ACCEPTED_HEADERS, "Queue-Client": QUEUE_CLIENT}),
                         "400": _problem("Malformed header"),
                         "404": _problem("Unknown or purged"),
                         "409": _problem("Queued, running or succeeded: not retryable"),
                         "500": _problem("The new request failed"),
                         "503": _problem("The queue is full")}}},
        "/healthz": {"get": {"operationId": "healthz", "summary": "Liveness",
                             "responses": {"200": _json({"type": "object"}, "Alive")}}},
        "/readyz": {"get": {"operationId": "readyz", "summary": "Readiness",
                            "responses": {"200": _json({"type": "object"}, "Ready"),
                                          "503": _json({"type": "object"}, "Not ready")}}},
        "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics",
                             "responses": {"200": {"description": "Prometheus text",
                                                   "content": {"text/plain": {}}}}}},
    }  # fmt: skip
    paths["/v1/queue/requests/{request_id}/events"] = {
        "get": {
            "operationId": "stream_request_events",
            "summary": "A request's events (Server-Sent Events)",
            "parameters": [REQUEST_ID, LAST_EVENT_ID, ACCESS_TOKEN],
            "responses": {
                "200": SSE,
                "204": {"description": "Already past the terminal event"},
                "400": _problem("Malformed Last-Event-ID"),
                "404": _problem("Unknown"),
                "429": _problem("Too many streams"),
            },
        }
    }
    paths["/v1/queue/events"] = {
        "get": {
            "operationId": "stream_client_events",
            "summary": "Every event of the client's requests",
            "parameters": [
                {"name": "operation", "in": "query", "schema": {"enum": list(operations)}},
                {
                    **LAST_EVENT_ID,
                    "description": "The id of the last event received: an opaque cursor (or a"
                    " plain <ms>-<seq> where the stream merges no streams), sent back as is",
                    "schema": {"type": "string", "maxLength": 4000},
                },
                ACCESS_TOKEN,
                CLIENT_QUERY,
            ],
            "responses": {
                "200": SSE,
                "400": _problem("Malformed Last-Event-ID, or no such client"),
                "403": _problem("client= from a non-operator"),
                "404": _problem("Unknown operation"),
                "429": _problem("Too many streams"),
            },
        }
    }
    paths["/docs"] = {
        "get": {
            "operationId": "docs",
            "summary": "This description, rendered",
            "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}},
        }
    }
    paths["/"] = {
        "get": {
            "operationId": "dashboard",
            "summary": "The dashboard",
            "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}},
        }
    }
    paths["/console"] = {
        "get": {
            "operationId": "console",
            "summary": "The operator console: overview charts, workers, requests, failures, webhooks",
            "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}},
        }
    }
    paths["/openapi.json"] = {
        "get": {
            "operationId": "openapi",
            "summary": "This description",
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
        }
    }
    paths.update(_webhook_paths())
    for op in operations.values():
        paths.update(_operation_paths(op))  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "acceptd",
            "version": "1",
            "description": (
                "Asynchronous request-reply (202 Accepted) for every operation. Without API keys"
                " (open mode) every path answers 421 to a Host that is not a loopback name or"
                " the configured public host."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Problem": PROBLEM_SCHEMA,
                "StatusMonitor": MONITOR,
                "Link": LINK,
                "WebhookEndpoint": ENDPOINT,
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }
