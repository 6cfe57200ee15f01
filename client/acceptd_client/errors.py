"""The client's exceptions: one base, one subclass per problem type a caller acts on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from acceptd_client.aio import AsyncRequest
    from acceptd_client.sync import Request

PROBLEM_BASE = "urn:acceptd:problem:"


class AcceptdError(Exception):
    """Every error this client raises.

    ``problem`` is the problem-details object (RFC 9457) when the service sent one, ``status``
    the HTTP status and ``retry_after`` the seconds the service asked to wait, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        problem: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.problem: dict[str, Any] = dict(problem or {})
        self.retry_after = retry_after

    @property
    def type(self) -> str:
        """The problem type URN (``about:blank`` when there is none)."""
        return str(self.problem.get("type", "about:blank"))


class ConnectionFailed(AcceptdError):
    """The service could not be reached (after the retries allowed)."""


class Unauthorized(AcceptdError):
    """401: no API key, or one the service does not know."""


class NotFound(AcceptdError):
    """404: no such operation or request (or not this client's)."""


class Conflict(AcceptdError):
    """409: e.g. cancelling a request that already finished."""


class InvalidInput(AcceptdError):
    """400/422: the input or a header was refused; ``errors`` lists ``{path, message}``."""

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The per-field errors the service listed (may be empty)."""
        found = self.problem.get("errors")
        return list(found) if isinstance(found, list) else []


class RateLimited(AcceptdError):
    """429: too many submissions or streams; ``retry_after`` says when to try again."""


class ServiceUnavailable(AcceptdError):
    """503: the service (or its Redis) cannot take this now; ``retry_after`` says when."""


class QueueFull(ServiceUnavailable):
    """503 ``queue-full``: the operation's queue is at its maximum depth."""


class RequestFailed(AcceptdError):
    """The request finished ``failed``; ``problem`` is its stored error."""

    def __init__(
        self,
        message: str,
        *,
        request: Request | AsyncRequest | None = None,
        status: int | None = None,
        problem: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, status=status, problem=problem)
        self.request = request


class QueueTimedOut(RequestFailed):
    """The request failed with ``queue-timeout``: it did not start within its queue timeout."""


class RequestCanceled(AcceptdError):
    """The request was canceled; ``request`` is it."""

    def __init__(
        self,
        message: str,
        *,
        request: Request | AsyncRequest | None = None,
        problem: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, problem=problem)
        self.request = request


class WaitTimeout(AcceptdError):
    """The wait ended before the request did. The request goes on: ``request`` is it."""

    def __init__(self, message: str, *, request: Request | AsyncRequest) -> None:
        super().__init__(message)
        self.request = request


class WebhookVerificationError(AcceptdError):
    """A webhook whose signature, headers or timestamp do not verify."""


_BY_SLUG: dict[str, type[AcceptdError]] = {
    "queue-full": QueueFull,
    "rate-limited": RateLimited,
    "invalid-input": InvalidInput,
    "rejected-input": InvalidInput,
    "idempotency-key-reused": InvalidInput,
    "invalid-header": InvalidInput,
    "malformed-json": InvalidInput,
    "unauthorized": Unauthorized,
}
_BY_STATUS: dict[int, type[AcceptdError]] = {
    400: InvalidInput,
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    415: InvalidInput,
    422: InvalidInput,
    429: RateLimited,
    503: ServiceUnavailable,
}


def error_for(status: int, problem: Mapping[str, Any], retry_after: float | None) -> AcceptdError:
    """The exception for an unsuccessful HTTP answer, chosen by problem type, then status."""
    slug = str(problem.get("type", ""))
    slug = slug[len(PROBLEM_BASE) :] if slug.startswith(PROBLEM_BASE) else ""
    cls = _BY_SLUG.get(slug) or _BY_STATUS.get(status, AcceptdError)
    detail = problem.get("detail") or problem.get("title") or f"HTTP {status}"
    return cls(f"{status}: {detail}", status=status, problem=problem, retry_after=retry_after)
