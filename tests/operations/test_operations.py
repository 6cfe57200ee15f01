"""The shipped example operations, called directly with a fake context (no Redis)."""

from __future__ import annotations

import asyncio
import base64
import io
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema  # type: ignore[import-untyped, unused-ignore]
import pytest
from PIL import ExifTags, Image

from service.handlers import SPEC_ATTR, OperationSpec, RejectedInput
from service.operations.echo import echo
from service.operations.iban import check_iban, mod97, validate
from service.operations.iban_registry import IBAN_REGISTRY
from service.operations.sleep import sleep
from service.operations.thumbnails import MAX_PIXELS, thumbnail


@dataclass
class FakeContext:
    """A Context that records progress reports."""

    request_id: str = "01TESTREQUEST"
    operation: str = "test"
    attempt: int = 1
    reports: list[tuple[float, str | None]] = field(default_factory=list)

    async def progress(self, percent: float, message: str | None = None) -> None:
        """Record a report from the event loop."""
        self.reports.append((percent, message))

    def progress_threadsafe(self, percent: float, message: str | None = None) -> None:
        """Record a report from a thread."""
        self.reports.append((percent, message))


def spec_of(handler: Callable[..., Any]) -> OperationSpec:
    """The OperationSpec the @operation decorator attached."""
    spec = getattr(handler, SPEC_ATTR)
    assert isinstance(spec, OperationSpec)
    return spec


def assert_output_valid(handler: Callable[..., Any], result: Any) -> None:
    """Check a result against the handler's declared output schema."""
    jsonschema.Draft202012Validator(spec_of(handler).output_schema).validate(result)


# --- schemas -------------------------------------------------------------------------------

IMG = "iVBORw0KGgo="  # schema-valid base64; content is checked by the handler

SCHEMA_CASES: list[tuple[Callable[..., Any], Any, Any]] = [
    (sleep, {"seconds": 1.5, "steps": 3}, {"seconds": -1}),
    (sleep, {"seconds": 0}, {"seconds": 1, "extra": True}),
    (sleep, {"seconds": 3600, "steps": 100}, {"seconds": 1, "steps": 0}),
    (sleep, {"seconds": 1}, {"steps": 5}),
    (validate, {"iban": "DE89370400440532013000"}, {"iban": ""}),
    (validate, {"iban": "hello"}, {"iban": "D" * 65}),
    (validate, {"iban": "x"}, {"iban": 123}),
    (thumbnail, {"image": IMG, "width": 1, "height": 4096}, {"image": IMG}),
    (thumbnail, {"image": IMG, "width": 64, "height": 64}, {"image": "", "width": 1, "height": 1}),
    (thumbnail, {"image": IMG, "width": 64, "height": 64}, {"image": IMG, "width": 0, "height": 1}),
    (
        thumbnail,
        {"image": IMG, "width": 64, "height": 64},
        {"image": IMG, "width": 1, "height": 4097},
    ),
]


@pytest.mark.parametrize("handler", [echo, sleep, validate, thumbnail])
def test_schemas_are_valid_json_schema(handler: Callable[..., Any]) -> None:
    """Every declared schema is a valid Draft 2020-12 schema, and the spec is documented."""
    spec = spec_of(handler)
    jsonschema.Draft202012Validator.check_schema(spec.input_schema)
    jsonschema.Draft202012Validator.check_schema(spec.output_schema)
    assert spec.summary
    assert spec.description


@pytest.mark.parametrize(("handler", "good", "bad"), SCHEMA_CASES)
def test_input_schema_accepts_and_rejects(handler: Callable[..., Any], good: Any, bad: Any) -> None:
    """A sample valid input passes the input schema and a bad one fails it."""
    validator = jsonschema.Draft202012Validator(spec_of(handler).input_schema)
    assert validator.is_valid(good)
    assert not validator.is_valid(bad)


def test_echo_schema_accepts_any_json() -> None:
    """The echo schema accepts every kind of JSON value."""
    validator = jsonschema.Draft202012Validator(spec_of(echo).input_schema)
    for value in [None, 1, 2.5, "s", [1, "a"], {"a": {"b": [None]}}, True]:
        assert validator.is_valid(value)


def test_run_in_and_input_limits() -> None:
    """Thumbnails run in a thread and may take a large body; the rest run on the loop."""
    thumb = spec_of(thumbnail)
    assert thumb.run_in == "thread"
    assert thumb.max_input_bytes is not None
    assert thumb.max_input_bytes >= thumb.input_schema["properties"]["image"]["maxLength"]
    assert all(spec_of(h).run_in is None for h in (echo, sleep, validate))


# --- echo ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, 0, "text", [1, 2, {"x": None}], {"nested": {"a": [1]}}])
async def test_echo_round_trip(value: Any) -> None:
    """Echo returns exactly its input."""
    assert await echo(FakeContext(), value) == value


# --- sleep ---------------------------------------------------------------------------------


async def test_sleep_reports_increasing_progress() -> None:
    """Sleep reports after each slice, up to 100%, then returns how long it slept."""
    ctx = FakeContext()
    started = time.monotonic()
    result = await sleep(ctx, {"seconds": 0.05, "steps": 5})
    assert time.monotonic() - started >= 0.05
    assert result == {"slept": 0.05}
    assert_output_valid(sleep, result)
    percents = [percent for percent, _ in ctx.reports]
    assert percents == pytest.approx([20, 40, 60, 80, 100])
    assert ctx.reports[-1][1] == "slept 0.1 of 0.1 s"


async def test_sleep_defaults_to_ten_steps() -> None:
    """Without steps, sleep reports ten times."""
    ctx = FakeContext()
    assert await sleep(ctx, {"seconds": 0}) == {"slept": 0}
    assert len(ctx.reports) == 10
    assert ctx.reports[0] == (10, "slept 0.0 of 0.0 s")


async def test_sleep_is_cancellable() -> None:
    """Cancelling the task stops the sleep promptly with CancelledError."""
    ctx = FakeContext()
    task = asyncio.create_task(sleep(ctx, {"seconds": 60, "steps": 2}))
    await asyncio.sleep(0.01)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert time.monotonic() - started < 1
    assert ctx.reports == []


# --- IBAN ----------------------------------------------------------------------------------

VALID_IBANS = [
    "DE89370400440532013000",
    "GB82WEST12345698765432",
    "FR1420041010050500013M02606",
    "NL91ABNA0417164300",
    "BE68539007547034",
    "NO9386011117947",
    "MT84MALT011000012345MTLCAST001S",
    "RU0204452560040702810412345678901",
    "LC55HEMM000100010012001200023015",
    "BR1800360305000010009795493C1",
]


@pytest.mark.parametrize("iban", VALID_IBANS)
async def test_iban_valid(iban: str) -> None:
    """Registry examples validate and are split into their parts."""
    result = await validate(FakeContext(), {"iban": iban})
    assert result == {
        "valid": True,
        "iban": iban,
        "country": iban[:2],
        "check_digits": iban[2:4],
        "bban": iban[4:],
        "reason": None,
    }
    assert_output_valid(validate, result)


@pytest.mark.parametrize(
    "text",
    [
        "DE89 3704 0044 0532 0130 00",
        "de89 3704 0044 0532 0130 00",
        " de89-3704-0044-0532-0130-00 ",
        "IBAN DE89 3704 0044 0532 0130 00",
        "DE89\u00a03704\t0044 0532 0130 00",
    ],
)
def test_iban_paper_format_is_normalized(text: str) -> None:
    """Spaces, dashes, lower case and the "IBAN" label are accepted and normalized away."""
    result = check_iban(text)
    assert result["valid"]
    assert result["iban"] == "DE89370400440532013000"


@pytest.mark.parametrize(
    ("text", "reason", "country"),
    [
        ("DE88370400440532013000", "check digits do not match (mod-97)", "DE"),
        ("GB82WEST12345698765433", "check digits do not match (mod-97)", "GB"),
        ("DE8937040044053201300", "wrong length for DE: expected 22 characters, got 21", "DE"),
        ("NL91ABNA04171643001", "wrong length for NL: expected 18 characters, got 19", "NL"),
        ("XX89370400440532013000", "unknown country code XX", None),
        ("hello", "unknown country code HE", None),
        ("DE89-3704!0044", "invalid characters", None),
        ("DE89370400440532013ÄÖ", "invalid characters", None),
        ("   ", "no IBAN given", None),
        ("DEXX370400440532013000", "check digits must be two digits", "DE"),
        ("DE00370400440532013000", "check digits must be between 02 and 98", "DE"),
        # Letters where Germany's BBAN has only digits: caught before the checksum.
        ("DE89370400440532O13000", "account number (BBAN) does not match the format for DE", "DE"),
    ],
)
async def test_iban_invalid(text: str, reason: str, country: str | None) -> None:
    """Invalid IBANs are a successful result with valid=false and a reason, not an error."""
    result = await validate(FakeContext(), {"iban": text})
    assert result["valid"] is False
    assert result["reason"] == reason
    assert result["country"] == country
    assert_output_valid(validate, result)


def test_iban_check_digits_aliasing_00_to_97_is_rejected() -> None:
    """Check digits 00 pass mod-97 exactly when 97 would, but ISO 13616 forbids them."""
    # Find a German account number whose true check digits are 97.
    for n in range(10_000):
        candidate = f"DE97{n:018d}"
        if mod97(candidate) == 1:
            break
    assert mod97("DE00" + candidate[4:]) == 1
    assert check_iban(candidate)["valid"]
    assert check_iban("DE00" + candidate[4:])["reason"] == "check digits must be between 02 and 98"


def test_iban_registry_is_consistent() -> None:
    """Each country's length is 4 plus its BBAN structure's length; codes are two letters."""
    assert len(IBAN_REGISTRY) >= 89
    for code, entry in IBAN_REGISTRY.items():
        assert re.fullmatch(r"[A-Z]{2}", code)
        assert re.fullmatch(r"(\d+[nac])+", entry.bban), code
        bban_length = sum(int(n) for n in re.findall(r"\d+", entry.bban))
        assert entry.length == 4 + bban_length, code


# --- thumbnails ----------------------------------------------------------------------------


def encode(img: Image.Image, fmt: str, **params: Any) -> str:
    """Save an image in a format and base64 it, as a client would."""
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_png(text: str) -> Image.Image:
    """Decode a result image, asserting it is a PNG."""
    img = Image.open(io.BytesIO(base64.b64decode(text)))
    assert img.format == "PNG"
    img.load()
    return img


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF"])
def test_thumbnail_keeps_aspect_ratio(fmt: str) -> None:
    """A 400x200 image in a 100x100 box becomes a 100x50 PNG."""
    ctx = FakeContext()
    source = encode(Image.new("RGB", (400, 200), (200, 30, 30)), fmt)
    result = thumbnail(ctx, {"image": source, "width": 100, "height": 100})
    assert (result["width"], result["height"], result["format"]) == (100, 50, "png")
    out = decode_png(result["image"])
    assert out.size == (100, 50)
    assert out.mode == "RGB"
    assert ctx.reports == [(50, "decoded")]
    assert_output_valid(thumbnail, result)


def test_thumbnail_never_enlarges() -> None:
    """A box larger than the image leaves its size unchanged."""
    source = encode(Image.new("L", (40, 30), 128), "PNG")
    result = thumbnail(FakeContext(), {"image": source, "width": 4096, "height": 4096})
    assert (result["width"], result["height"]) == (40, 30)
    assert decode_png(result["image"]).mode == "RGB"


def test_thumbnail_keeps_transparency() -> None:
    """Images with an alpha channel come out as RGBA."""
    source = encode(Image.new("RGBA", (64, 64), (0, 0, 255, 100)), "PNG")
    result = thumbnail(FakeContext(), {"image": source, "width": 32, "height": 32})
    out = decode_png(result["image"])
    assert out.mode == "RGBA"
    assert out.getpixel((16, 16)) == (0, 0, 255, 100)


def test_thumbnail_applies_exif_orientation() -> None:
    """A JPEG stored sideways with EXIF orientation 6 comes out upright and fits the box."""
    stored = Image.new("RGB", (400, 200), (255, 0, 0))
    stored.paste((0, 0, 255), (200, 0, 400, 200))  # left half red, right half blue
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # display rotated 90 degrees clockwise
    source = encode(stored, "JPEG", exif=exif.tobytes())
    result = thumbnail(FakeContext(), {"image": source, "width": 100, "height": 100})
    assert (result["width"], result["height"]) == (50, 100)
    out = decode_png(result["image"])
    top, bottom = out.getpixel((25, 10)), out.getpixel((25, 90))
    assert isinstance(top, tuple)
    assert isinstance(bottom, tuple)
    assert top[0] > 200 > top[2]  # red above
    assert bottom[2] > 200 > bottom[0]  # blue below


def test_thumbnail_rejects_invalid_base64() -> None:
    """Input that is not base64 is rejected with a clear message."""
    with pytest.raises(RejectedInput, match=r"^image is not valid base64$"):
        thumbnail(FakeContext(), {"image": "not base64!", "width": 10, "height": 10})
    with pytest.raises(RejectedInput, match=r"^image is not valid base64$"):
        thumbnail(FakeContext(), {"image": "ÄÖÜ=", "width": 10, "height": 10})


def test_thumbnail_accepts_wrapped_base64() -> None:
    """Base64 wrapped at 76 columns (as MIME encoders do) is accepted."""
    source = base64.encodebytes(base64.b64decode(encode(Image.new("RGB", (80, 80)), "PNG")))
    text = source.decode("ascii")
    assert "\n" in text
    result = thumbnail(FakeContext(), {"image": text, "width": 8, "height": 8})
    assert (result["width"], result["height"]) == (8, 8)


@pytest.mark.parametrize(
    "payload",
    [
        b"definitely not an image",
        # A TIFF: a real image, but not an accepted format.
        base64.b64decode(encode(Image.new("RGB", (10, 10)), "TIFF")),
    ],
)
def test_thumbnail_rejects_undecodable_bytes(payload: bytes) -> None:
    """Bytes that are no accepted image format are rejected without internal details."""
    ctx = FakeContext()
    source = base64.b64encode(payload).decode("ascii")
    with pytest.raises(RejectedInput, match=r"^image could not be decoded: not a recognised") as e:
        thumbnail(ctx, {"image": source, "width": 10, "height": 10})
    assert "BytesIO" not in e.value.message
    assert ctx.reports == []


def test_thumbnail_rejects_truncated_image() -> None:
    """An image cut short is rejected, not a crash."""
    whole = base64.b64decode(encode(Image.effect_noise((200, 200), 50), "PNG"))
    source = base64.b64encode(whole[: len(whole) // 2]).decode("ascii")
    with pytest.raises(RejectedInput, match=r"^image could not be decoded: "):
        thumbnail(FakeContext(), {"image": source, "width": 10, "height": 10})


def test_thumbnail_rejects_decompression_bomb() -> None:
    """A small file declaring more pixels than the limit is rejected before decoding."""
    side = int(MAX_PIXELS**0.5) + 100
    source = encode(Image.new("1", (side, side)), "PNG")
    assert len(source) < 200_000
    with pytest.raises(RejectedInput, match="exceeds the limit"):
        thumbnail(FakeContext(), {"image": source, "width": 10, "height": 10})
