"""acceptd's Python client: ``Client`` (sync), ``AsyncClient`` (asyncio), ``verify_webhook``."""

from acceptd_client.aio import AsyncClient, AsyncRequest
from acceptd_client.core import BatchItem, Event, Monitor, Progress
from acceptd_client.errors import (
    AcceptdError,
    Conflict,
    ConnectionFailed,
    InvalidInput,
    NotFound,
    QueueFull,
    QueueTimedOut,
    RateLimited,
    RequestCanceled,
    RequestFailed,
    ServiceUnavailable,
    Unauthorized,
    WaitTimeout,
    WebhookVerificationError,
)
from acceptd_client.sync import Client, Request
from acceptd_client.webhooks import verify_webhook

__version__ = "0.1.0"

__all__ = [
    "AcceptdError",
    "AsyncClient",
    "AsyncRequest",
    "BatchItem",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Event",
    "InvalidInput",
    "Monitor",
    "NotFound",
    "Progress",
    "QueueFull",
    "QueueTimedOut",
    "RateLimited",
    "Request",
    "RequestCanceled",
    "RequestFailed",
    "ServiceUnavailable",
    "Unauthorized",
    "WaitTimeout",
    "WebhookVerificationError",
    "verify_webhook",
]
