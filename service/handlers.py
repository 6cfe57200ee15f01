"""The handler contract: what an operation's Python function receives and may raise."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

RunIn = Literal["loop", "thread", "process"]


class Context(Protocol):
    """What a handler is given besides its input."""

    @property
    def request_id(self) -> str: ...

    @property
    def operation(self) -> str: ...

    @property
    def attempt(self) -> int: ...

    async def progress(self, percent: float, message: str | None = None) -> None:
        """Report progress (0-100); published to status monitors, streams and webhooks."""

    def progress_threadsafe(self, percent: float, message: str | None = None) -> None:
        """Report progress from a plain ``def`` handler running in a thread."""


Handler = Callable[[Context, Any], Awaitable[Any]] | Callable[[Context, Any], Any]


class HandlerError(Exception):
    """Base of the errors a handler may raise on purpose."""


class RejectedInput(HandlerError):
    """The input is unacceptable: the request fails with this message (status 422)."""

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []


class Retryable(HandlerError):
    """A transient failure: retried with backoff up to the operation's attempts."""

    def __init__(self, message: str = "transient failure", defer: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.defer = defer


@dataclass(frozen=True)
class OperationSpec:
    """What a handler declares about itself: input/output JSON Schemas and where it runs."""

    input_schema: dict[str, Any]
    output_schema: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    description: str = ""
    run_in: RunIn | None = None
    max_input_bytes: int | None = None


SPEC_ATTR = "__acceptd_operation__"

F = TypeVar("F", bound=Callable[..., Any])


def operation(
    *,
    input_schema: dict[str, Any],
    output_schema: dict[str, Any] | None = None,
    summary: str = "",
    description: str = "",
    run_in: RunIn | None = None,
    max_input_bytes: int | None = None,
) -> Callable[[F], F]:
    """Declare a function as an acceptd operation handler."""

    def decorate(fn: F) -> F:
        spec = OperationSpec(
            input_schema=input_schema,
            output_schema=output_schema or {},
            summary=summary,
            description=description,
            run_in=run_in,
            max_input_bytes=max_input_bytes,
        )
        setattr(fn, SPEC_ATTR, spec)
        return fn

    return decorate
