"""The echo operation: returns its input unchanged, for tests and demos."""

from __future__ import annotations

from typing import Any, Final

from service.handlers import Context, operation

ANY_JSON: Final[dict[str, Any]] = {"description": "Any JSON value."}


@operation(
    input_schema=ANY_JSON,
    output_schema=ANY_JSON,
    summary="Return the input unchanged.",
    description="Accepts any JSON value and returns it as the result; useful to try the API.",
)
async def echo(ctx: Context, data: Any) -> Any:
    """Return the input unchanged."""
    return data
