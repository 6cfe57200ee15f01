"""Every shipped operation takes every input its own schema admits (issue 13, item 4).

Inputs are drawn from each operation's input schema (hypothesis-jsonschema) and sent the
way the service does: as JSON text, which the worker parses again, so an ``integer`` may
arrive as ``86.0`` (JSON Schema counts it as an integer). The handler must return a result
matching its output schema, or fail with its documented ``RejectedInput`` — never raise
anything else (an internal error). Only the clock is faked (``sleep`` does not really wait).
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped, unused-ignore]
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from PIL import Image

from service.handlers import RejectedInput
from service.registry import build_operations
from service.runtime.config import settings_from_dict
from tests.operations.test_operations import FakeContext, spec_of

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = build_operations(settings_from_dict(yaml.safe_load((ROOT / "config.yaml").read_text())))
# Bounded so the four operations take a few seconds together.
EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def integral_floats(value: Any) -> Any:
    """``value`` with every integer written as a float (``86`` as ``86.0``), as JSON allows."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) < 2**53:
        return float(value)
    if isinstance(value, list):
        return [integral_floats(v) for v in value]
    if isinstance(value, dict):
        return {k: integral_floats(v) for k, v in value.items()}
    return value


def as_sent(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Schema-valid inputs, after the JSON round trip the service makes."""
    drawn = from_schema(schema)
    return st.one_of(drawn, drawn.map(integral_floats)).map(lambda v: json.loads(json.dumps(v)))


def small_images() -> st.SearchStrategy[str]:
    """Real images (so the handler gets past decoding), base64, in every accepted format."""

    def encode(args: tuple[int, int, str, str]) -> str:
        width, height, mode, fmt = args
        img = Image.new(mode, (width, height), "white" if mode != "P" else 1)
        if fmt == "JPEG" and mode not in ("RGB", "L"):
            img = img.convert("RGB")
        buf = io.BytesIO()
        img.save(buf, format=fmt)
        return base64.b64encode(buf.getvalue()).decode()

    return st.tuples(
        st.integers(1, 300),
        st.integers(1, 300),
        st.sampled_from(["RGB", "RGBA", "L", "P", "1"]),
        st.sampled_from(["PNG", "JPEG", "GIF", "BMP"]),
    ).map(encode)


def run(handler: Callable[..., Any], data: Any) -> Any:
    """Call the handler as the worker would (a plain def runs as is: no loop needed)."""
    ctx = FakeContext()
    if not inspect.iscoroutinefunction(handler):
        return handler(ctx, data)

    async def instant(delay: float, result: Any = None) -> Any:
        return result

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(asyncio, "sleep", instant)  # what sleep_module calls
        return asyncio.run(handler(ctx, data))


def check(name: str, data: Any) -> None:
    op = SHIPPED[name]
    assert not op.validate(data), data  # drawn from the schema: it must pass it
    try:
        result = run(op.handler, data)
    except RejectedInput:
        return  # the operation's documented failure (a 422 in the request's error)
    jsonschema.Draft202012Validator(spec_of(op.handler).output_schema).validate(result)
    json.dumps(result, allow_nan=False)


def test_every_shipped_operation_is_covered() -> None:
    assert set(SHIPPED) == {"echo", "sleep", "bank-account-validations", "image-thumbnails"}


@EXAMPLES
@given(as_sent(SHIPPED["echo"].spec.input_schema))
def test_echo_takes_every_schema_valid_input(data: Any) -> None:
    check("echo", data)


@EXAMPLES
@given(as_sent(SHIPPED["sleep"].spec.input_schema))
def test_sleep_takes_every_schema_valid_input(data: Any) -> None:
    check("sleep", data)


def test_sleep_takes_an_integral_float_step_count() -> None:
    """The input schemathesis found: a 500 (``range(86.0)``) before."""
    check("sleep", {"seconds": 1, "steps": 86.0})


@EXAMPLES
@given(as_sent(SHIPPED["bank-account-validations"].spec.input_schema))
def test_iban_validation_takes_every_schema_valid_input(data: Any) -> None:
    check("bank-account-validations", data)


@EXAMPLES
@given(as_sent(SHIPPED["image-thumbnails"].spec.input_schema))
def test_thumbnails_take_every_schema_valid_input(data: Any) -> None:
    check("image-thumbnails", data)


@EXAMPLES
@given(st.data())
def test_thumbnails_of_real_images_take_every_schema_valid_box(data: st.DataObject) -> None:
    schema = SHIPPED["image-thumbnails"].spec.input_schema
    box = data.draw(as_sent({**schema, "properties": {**schema["properties"], "image": {}}}))
    check("image-thumbnails", {**box, "image": data.draw(small_images())})
