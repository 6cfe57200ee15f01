"""Image processing: scale an image down to fit a box, keeping its aspect ratio, as PNG."""

from __future__ import annotations

import base64
import functools
import io
import struct
from typing import Any, Final, Literal, TypedDict

from PIL import ExifTags, Image, UnidentifiedImageError

from service.handlers import Context, RejectedInput, operation

MAX_IMAGE_BYTES: Final = 10 * 1024 * 1024
# Base64 of MAX_IMAGE_BYTES, padded to whole 4-character groups.
MAX_IMAGE_CHARS: Final = 4 * -(-MAX_IMAGE_BYTES // 3)
MAX_INPUT_BYTES: Final = 16 * 1024 * 1024
MAX_SIDE: Final = 4096
# Decoded pixels are what cost memory (4 bytes each at RGBA): a small, highly compressed
# file can declare a huge canvas. 50 megapixels is about 200 MB decoded.
MAX_PIXELS: Final = 50_000_000
# Only common web formats: Pillow's other decoders (EPS runs Ghostscript, for one) are
# attack surface that a thumbnail service does not need.
ACCEPTED_FORMATS: Final = ("PNG", "JPEG", "GIF", "WEBP", "BMP")

_REASON_CHARS: Final = 120

# EXIF orientation -> the transpose that makes the image upright; 5-8 swap width and height.
_ORIENTATIONS: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES: Final = frozenset({5, 6, 7, 8})
_INDEXED_MODES: Final = frozenset({"1", "P", "PA"})

# What Pillow raises on malformed input, besides OSError (which covers UnidentifiedImageError
# and truncated files); DecompressionBombWarning appears where warnings are errors.
_DECODE_ERRORS: Final = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    struct.error,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)


class ThumbnailInput(TypedDict):
    """The operation's input."""

    image: str
    width: int
    height: int


class ThumbnailResult(TypedDict):
    """The operation's result."""

    image: str
    width: int
    height: int
    format: Literal["png"]


INPUT_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "image": {
            "type": "string",
            "contentEncoding": "base64",
            "minLength": 1,
            "maxLength": MAX_IMAGE_CHARS,
            "description": "The image file (PNG, JPEG, GIF, WebP or BMP), base64-encoded.",
        },
        "width": {"type": "integer", "minimum": 1, "maximum": MAX_SIDE},
        "height": {"type": "integer", "minimum": 1, "maximum": MAX_SIDE},
    },
    "required": ["image", "width", "height"],
    "additionalProperties": False,
}

OUTPUT_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "image": {"type": "string", "contentEncoding": "base64", "contentMediaType": "image/png"},
        "width": {"type": "integer", "minimum": 1},
        "height": {"type": "integer", "minimum": 1},
        "format": {"const": "png"},
    },
    "required": ["image", "width", "height", "format"],
    "additionalProperties": False,
}


@functools.cache
def _formats() -> tuple[str, ...]:
    """The accepted formats this Pillow build can decode (Image.open fails on unknown ones)."""
    Image.init()
    return tuple(name for name in ACCEPTED_FORMATS if name in Image.OPEN)


def _decode_base64(text: str) -> bytes:
    """Decode standard base64, tolerating line breaks but nothing else that is not base64."""
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except ValueError:  # binascii.Error, or non-ASCII characters
        raise RejectedInput("image is not valid base64") from None


def _short(exc: BaseException) -> str:
    """A one-line, bounded description of a decoding failure, safe to show the client."""
    if isinstance(exc, UnidentifiedImageError):
        # Its message embeds the repr of our buffer, which means nothing to the client.
        return f"not a recognised image format (accepted: {', '.join(_formats())})"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 3] + "..."


def _load(raw: bytes) -> tuple[Image.Image, int]:
    """Open and check the image without decoding its pixels; return it and its orientation."""
    img = Image.open(io.BytesIO(raw), formats=_formats())
    if img.width * img.height > MAX_PIXELS:
        raise Image.DecompressionBombError(
            f"{img.width}x{img.height} exceeds the limit of {MAX_PIXELS} pixels"
        )
    orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
    # A malformed EXIF block can hold any type here; anything unexpected means "as stored".
    return img, orientation if isinstance(orientation, int) and orientation in _ORIENTATIONS else 1


def _rgb(img: Image.Image) -> Image.Image:
    """Convert to RGB, or RGBA when the image has transparency."""
    return img.convert("RGBA" if img.has_transparency_data else "RGB")


@operation(
    input_schema=INPUT_SCHEMA,
    output_schema=OUTPUT_SCHEMA,
    summary="Make a PNG thumbnail of an image.",
    description=(
        "Scales a base64-encoded PNG, JPEG, GIF, WebP or BMP image down to fit within "
        "`width` x `height`, keeping its aspect ratio (never enlarging it) and applying its "
        "EXIF orientation, and returns it as a base64 PNG with its actual size. Images of "
        f"more than {MAX_PIXELS} pixels are rejected; animated images give their first frame."
    ),
    run_in="thread",
    max_input_bytes=MAX_INPUT_BYTES,
)
def thumbnail(ctx: Context, data: ThumbnailInput) -> ThumbnailResult:
    """Decode the image, shrink it to fit the box and return it as base64 PNG."""
    raw = _decode_base64(data["image"])
    # JSON Schema's "integer" admits 128.0, which arrives as a float.
    box = (int(data["width"]), int(data["height"]))
    try:
        img, orientation = _load(raw)
        if img.mode in _INDEXED_MODES:
            # Pillow resizes indexed images with nearest-neighbour; give it real colours.
            img = _rgb(img)
        # Shrink before rotating so the large image is never transposed; when the rotation
        # swaps the axes, fit the unrotated image in the swapped box. thumbnail() also lets
        # JPEG decode at reduced scale, so it is where the pixels are decoded.
        img.thumbnail(box[::-1] if orientation in _SWAPS_AXES else box)
    except _DECODE_ERRORS as exc:
        raise RejectedInput(f"image could not be decoded: {_short(exc)}") from None
    ctx.progress_threadsafe(50, "decoded")
    if orientation != 1:
        img = img.transpose(_ORIENTATIONS[orientation])
    if img.mode not in ("RGB", "RGBA"):
        img = _rgb(img)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return {
        "image": base64.b64encode(buf.getvalue()).decode("ascii"),
        "width": img.width,
        "height": img.height,
        "format": "png",
    }
