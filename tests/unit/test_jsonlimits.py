"""Bounded JSON parsing (bridge.jsonlimits)."""

from __future__ import annotations

import pytest

from bridge.jsonlimits import MAX_DEPTH, JsonLimitError, loads


def nested(depth: int, opener: str = "[", closer: str = "]") -> str:
    return opener * depth + closer * depth


def test_ordinary_documents_parse() -> None:
    assert loads('{"a": [1, {"b": null}]}', 100) == {"a": [1, {"b": None}]}
    assert loads(b"7", 100) == 7
    assert loads(bytearray(b'"x"'), 100) == "x"


def test_brackets_inside_strings_do_not_count() -> None:
    text = '{"s": "' + "[" * 1000 + '"}'
    assert loads(text, 10_000) == {"s": "[" * 1000}


def test_depth_at_the_limit_is_accepted_one_more_is_not() -> None:
    assert loads(nested(MAX_DEPTH), 10_000) is not None
    with pytest.raises(JsonLimitError, match=f"nested deeper than {MAX_DEPTH} levels"):
        loads(nested(MAX_DEPTH + 1), 10_000)


@pytest.mark.parametrize("depth", [500, 5_000, 200_000])
def test_deep_nesting_is_a_value_error_not_a_recursion_error(depth: int) -> None:
    for text in (nested(depth), '{"a":' * depth + "1" + "}" * depth):
        with pytest.raises(ValueError, match="nested deeper"):
            loads(text, 10 * 1024 * 1024)


def test_size_is_checked_before_parsing() -> None:
    with pytest.raises(JsonLimitError, match="larger than 10 bytes"):
        loads("[" + "1," * 10 + "1]", 10)


def test_not_json_is_a_plain_value_error() -> None:
    with pytest.raises(ValueError, match="Expecting property name") as info:
        loads("{not json", 100)
    assert not isinstance(info.value, JsonLimitError)
