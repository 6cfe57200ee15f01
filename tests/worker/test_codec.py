"""The JSON of a job (service/worker/codec.py): orjson where it is exact, the standard library
where it is not, so inputs reach handlers as ``json.loads`` would give them."""

from __future__ import annotations

import json

import pytest

from service.worker.codec import parse_input, result_to_json


@pytest.mark.parametrize(
    "text",
    [
        '{"hello":"world","n":[1,2.5,-3e-7,true,null]}',
        '{"big":123456789012345678901234567890,"neg":-18446744073709551617}',
        '{"id":"12345678901234567890123"}',  # long digits in a string: still exact
        '{"lone":"\\ud800"}',  # orjson refuses a lone surrogate escape
        '{"s":"h\\u00e9llo \\u2603"}',
    ],
)
def test_inputs_parse_as_the_standard_library_parses_them(text: str) -> None:
    parsed = parse_input(text)
    assert parsed == json.loads(text)
    assert json.dumps(parsed) == json.dumps(json.loads(text))  # same types (no int -> float)


def test_results_are_compact_utf8_json_with_their_size() -> None:
    text, size = result_to_json({"s": "h\u00e9llo", "n": [1, 2.5]})
    assert text == '{"s":"h\u00e9llo","n":[1,2.5]}'
    assert size == len(text.encode())


def test_results_orjson_refuses_are_encoded_by_the_standard_library() -> None:
    assert result_to_json({1: "a"}) == ('{"1":"a"}', 9)
    big = 2**70
    assert result_to_json([big])[0] == f"[{big}]"
    with pytest.raises(UnicodeEncodeError):
        result_to_json({"lone": "\ud800"})
    with pytest.raises(TypeError):
        result_to_json({1, 2})


def test_nan_becomes_null() -> None:
    assert result_to_json([float("nan"), float("inf")])[0] == "[null,null]"
