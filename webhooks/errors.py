"""The webhook package's exceptions, under one base."""

from __future__ import annotations


class WebhookError(Exception):
    """Base of every error this package raises on purpose."""


class EndpointNotFound(WebhookError):
    """No such endpoint for this client (another client's endpoint is not found either)."""


class DeliveryNotFound(WebhookError):
    """No such delivery for this client."""


class InvalidEndpoint(WebhookError, ValueError):
    """An endpoint field has an invalid value; the message names the field."""


class TargetRefused(WebhookError):
    """A webhook target URL or address is not allowed (SSRF protection)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EndpointLimit(WebhookError):
    """The client has as many endpoints as it may have."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} endpoints per client")
        self.limit = limit
