"""Bank-account validation: ISO 13616 IBAN structure and ISO 7064 mod-97 check digits."""

from __future__ import annotations

import re
import string
from typing import Any, Final, TypedDict

from service.handlers import Context, operation
from service.operations.iban_registry import IBAN_REGISTRY

_CHAR_CLASSES: Final = {"n": "[0-9]", "a": "[A-Z]", "c": "[A-Z0-9]"}

# Paper format allows spaces (ISO 13616 groups of four) and people paste dashes, tabs or
# no-break spaces; a leading "IBAN" label is part of the paper format too.
_SEPARATORS: Final = re.compile(r"[\s\-]+")
_PAPER_PREFIX: Final = re.compile(r"^IBAN:?")
_ALPHANUMERIC: Final = re.compile(r"[A-Z0-9]+")
# ASCII-only upper-casing: str.upper() maps some non-ASCII letters to ASCII (dotless i
# U+0131 to "I", long s U+017F to "S"), which would let them pass as valid characters.
_ASCII_UPPER: Final = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)


def _bban_pattern(structure: str) -> re.Pattern[str]:
    """Compile registry notation such as "4a6n8n" into a regular expression for fullmatch."""
    parts = re.findall(r"(\d+)([nac])", structure)
    return re.compile("".join(f"{_CHAR_CLASSES[kind]}{{{count}}}" for count, kind in parts))


_BBAN_PATTERNS: Final = {
    country: _bban_pattern(entry.bban) for country, entry in IBAN_REGISTRY.items()
}


class IbanInput(TypedDict):
    """The operation's input."""

    iban: str


class IbanResult(TypedDict):
    """The operation's result: the verdict, the normalized IBAN, its parts and why not."""

    valid: bool
    iban: str
    country: str | None
    check_digits: str | None
    bban: str | None
    reason: str | None


INPUT_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "iban": {
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "description": "An IBAN in electronic or paper format (spaces, dashes allowed).",
            "examples": ["DE89370400440532013000", "GB82 WEST 1234 5698 7654 32"],
        }
    },
    "required": ["iban"],
    "additionalProperties": False,
}

_NULLABLE_STRING: Final = {"type": ["string", "null"]}

OUTPUT_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "valid": {"type": "boolean"},
        "iban": {"type": "string", "description": "Electronic format: upper case, no spaces."},
        "country": {**_NULLABLE_STRING, "description": "ISO 3166 code, if in the registry."},
        "check_digits": {**_NULLABLE_STRING, "description": "Set once the length is right."},
        "bban": {**_NULLABLE_STRING, "description": "Set once the length is right."},
        "reason": {**_NULLABLE_STRING, "description": "Why it is invalid; null if valid."},
    },
    "required": ["valid", "iban", "country", "check_digits", "bban", "reason"],
    "additionalProperties": False,
}


def normalize(text: str) -> str:
    """Return the electronic format of an IBAN: separators removed, upper case."""
    return _PAPER_PREFIX.sub("", _SEPARATORS.sub("", text).translate(_ASCII_UPPER))


def mod97(iban: str) -> int:
    """Return the ISO 7064 MOD 97-10 remainder of an upper-case alphanumeric IBAN."""
    rearranged = iban[4:] + iban[:4]
    # int(c, 36) maps 0-9 to themselves and A-Z to 10-35, exactly the ISO 13616 substitution.
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97


def check_iban(text: str) -> IbanResult:
    """Validate an IBAN: characters, country, length, BBAN structure, then check digits."""
    iban = normalize(text)
    result = IbanResult(
        valid=False, iban=iban, country=None, check_digits=None, bban=None, reason=None
    )

    if not iban:
        result["reason"] = "no IBAN given"
        return result
    # ASCII only: str.isalnum() would accept other scripts' letters and digits.
    if not _ALPHANUMERIC.fullmatch(iban):
        result["reason"] = "invalid characters"
        return result
    code = iban[:2]
    entry = IBAN_REGISTRY.get(code)
    if entry is None:
        result["reason"] = f"unknown country code {code}"
        return result
    result["country"] = code
    if len(iban) != entry.length:
        result["reason"] = (
            f"wrong length for {code}: expected {entry.length} characters, got {len(iban)}"
        )
        return result
    check_digits, bban = iban[2:4], iban[4:]
    result["check_digits"], result["bban"] = check_digits, bban
    if not check_digits.isdigit():
        result["reason"] = "check digits must be two digits"
        return result
    if not _BBAN_PATTERNS[code].fullmatch(bban):
        result["reason"] = f"account number (BBAN) does not match the format for {code}"
        return result
    # 00, 01 and 99 can pass mod-97 (they alias 97, 98 and 02) but ISO 13616 never issues them.
    if not 2 <= int(check_digits) <= 98:
        result["reason"] = "check digits must be between 02 and 98"
        return result
    if mod97(iban) != 1:
        result["reason"] = "check digits do not match (mod-97)"
        return result
    result["valid"] = True
    return result


@operation(
    input_schema=INPUT_SCHEMA,
    output_schema=OUTPUT_SCHEMA,
    summary="Validate a bank account number (IBAN).",
    description=(
        "Checks an IBAN against ISO 13616: spaces and dashes are ignored and letters are "
        "upper-cased, the country must be in the SWIFT IBAN registry, the length and the "
        "account-number (BBAN) structure must match that country's entry, and the check "
        "digits must pass ISO 7064 mod-97. An invalid IBAN is a successful result with "
        "valid=false and a reason, not a failed request. A valid IBAN says nothing about "
        "whether the account exists."
    ),
)
async def validate(ctx: Context, data: IbanInput) -> IbanResult:
    """Validate the IBAN in the input."""
    return check_iban(data["iban"])
