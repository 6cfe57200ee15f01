"""Problem details (RFC 9457) stored on failed and canceled requests."""

from __future__ import annotations

import json
from typing import Any

PROBLEM_BASE = "urn:acceptd:problem:"


def problem(slug: str, title: str, status: int, detail: str, **extra: Any) -> dict[str, Any]:
    """A problem-details object."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    return body


def dumps(obj: Any) -> str:
    """Compact JSON."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def canceled() -> str:
    """The error of a canceled request."""
    return dumps(problem("canceled", "Canceled", 409, "the request was canceled"))


def rejected(message: str, errors: list[dict[str, str]]) -> str:
    """The error of a request whose handler rejected its input."""
    extra = {"errors": errors} if errors else {}
    return dumps(problem("rejected-input", "Rejected input", 422, message, **extra))


def internal() -> str:
    """An unexpected handler failure; the detail never leaks internals."""
    return dumps(
        problem("internal-error", "Internal error", 500, "the operation failed unexpectedly")
    )


def timed_out(seconds: float) -> str:
    """A handler that ran past its operation's timeout."""
    return dumps(
        problem("timeout", "Timed out", 504, f"the operation did not finish within {seconds:g} s")
    )


def retries_exhausted(message: str) -> str:
    """A retryable failure after the last attempt."""
    return dumps(problem("retries-exhausted", "Failed after retries", 503, message))


def result_too_large(limit: int) -> str:
    """A handler's result over the operation's ``max_result_bytes``."""
    return dumps(
        problem(
            "result-too-large",
            "Result too large",
            500,
            f"the operation's result exceeds its {limit}-byte limit",
            limit=limit,
        )
    )
