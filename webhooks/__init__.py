"""Webhooks for acceptd: endpoints, signed deliveries with retries, SSRF-safe sending.

The service wires it up: a :class:`WebhookStore` for the API (run :func:`check_url` on target
URLs before storing them) and a :class:`Dispatcher` task fed by the core's outbox streams.
This package never imports ``aiohttp.web`` or ``service.app``.
"""

from __future__ import annotations

from webhooks.dispatcher import Dispatcher, DispatchSettings
from webhooks.errors import (
    DeliveryNotFound,
    EndpointLimit,
    EndpointNotFound,
    InvalidEndpoint,
    TargetRefused,
    WebhookError,
)
from webhooks.events import DEFAULT_EVENTS, EVENTS
from webhooks.models import Delivery, Endpoint
from webhooks.signing import new_secret, sign
from webhooks.ssrf import SafeResolver, check_url
from webhooks.store import WebhookStore

__all__ = [
    "DEFAULT_EVENTS",
    "EVENTS",
    "Delivery",
    "DeliveryNotFound",
    "DispatchSettings",
    "Dispatcher",
    "Endpoint",
    "EndpointLimit",
    "EndpointNotFound",
    "InvalidEndpoint",
    "SafeResolver",
    "TargetRefused",
    "WebhookError",
    "WebhookStore",
    "check_url",
    "new_secret",
    "sign",
]
