"""Value codec: hub wire ↔ model, model → payload, /set payload → validated model value."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from bridge.codec import (
    MAX_SET_PAYLOAD,
    WriteRejected,
    decode_device_set,
    decode_set,
    decode_value,
    echoes_read_only,
    from_wire,
    json_number,
    plain_number,
    to_json_value,
    to_payload,
    to_string_wire,
    to_studio_wire,
)
from bridge.model import EnumOption, TraitSpec, TraitType

BOOL = TraitSpec(TraitType.BOOLEAN, format="Bool", writable=True)
BOOL_RO = TraitSpec(TraitType.BOOLEAN, format="Bool")
BOOL_LABELLED = TraitSpec(
    TraitType.BOOLEAN, writable=True,
    enums=(EnumOption("Closed", "0"), EnumOption("Open", "1")),
)
LEVEL = TraitSpec(TraitType.NUMBER, format="uint8", min=0, max=100, step=1, writable=True)
TEMP = TraitSpec(TraitType.NUMBER, format="float", min=5, max=30, step=0.5, unit="°C",
                 writable=True)
FREE_NUMBER = TraitSpec(TraitType.NUMBER, writable=True)
MODE = TraitSpec(
    TraitType.ENUM, format="uint8", writable=True,
    enums=(EnumOption("Auto", "0"), EnumOption("Cool", "1"), EnumOption("Heat", "4")),
)
OPEN_ENUM = TraitSpec(TraitType.ENUM, writable=True)
TEXT = TraitSpec(TraitType.STRING, writable=True)
OTHER = TraitSpec(TraitType.OTHER, writable=True)
WHERE = "2.LevelControl.CurrentLevel"


def rejected(spec: TraitSpec, payload: bytes | str, current: Any = None, where: str = "") -> str:
    with pytest.raises(WriteRejected) as info:
        decode_set(spec, payload, current=current, where=where)
    assert str(info.value) == info.value.reason
    return info.value.reason


# ---- numbers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (0, "0"), (-5, "-5"), (10**30, "1" + "0" * 30), (5.0, "5"), (-0.0, "0"), (0.0, "0"),
        (0.1, "0.1"), (21.5, "21.5"), (1e-07, "0.0000001"), (1e21, "1000000000000000000000"),
        (1.5e-10, "0.00000000015"), (1.2345e30, "1234500000000000000000000000000"),
        (123456789.125, "123456789.125"), (-2.5e-5, "-0.000025"), (100.0, "100"),
        (True, "true"), (False, "false"), (math.nan, "null"), (math.inf, "null"),
    ],
)
def test_plain_number(number: float, text: str) -> None:
    assert plain_number(number) == text


@given(st.floats(allow_nan=False, allow_infinity=False))
@example(5e-324)
@example(1.7976931348623157e308)
def test_plain_number_is_exact_and_plain(number: float) -> None:
    text = plain_number(number)
    assert "e" not in text
    assert "E" not in text
    assert not text.endswith(".0")
    assert not text.endswith(".")
    assert float(text) == number
    assert Decimal(text) == Decimal(repr(number))  # shortest repr digits, no binary noise


@given(st.integers())
def test_plain_number_ints(number: int) -> None:
    assert plain_number(number) == str(number)


def test_json_number() -> None:
    assert json_number(21.0) == 21
    assert isinstance(json_number(21.0), int)
    assert json_number(-0.0) == 0
    assert isinstance(json_number(-0.0), int)
    assert json_number(21.5) == 21.5
    assert json_number(7) == 7
    assert json_number(1e300) == 1e300
    assert isinstance(json_number(1e300), float)
    assert json_number(math.nan) is None
    assert json_number(-math.inf) is None


# ---- from_wire --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [(True, True), (False, False), (1, True), (0, False), (1.0, True), ("1", True), ("0", False),
     ("true", True), ("FALSE", False), (" True ", True), ("on", True), ("OFF", False)],
)
def test_from_wire_boolean(raw: Any, value: bool) -> None:
    assert from_wire(BOOL, raw) is value


@pytest.mark.parametrize("raw", [2, -1, "yes", "", [], {}, 0.5])
def test_from_wire_boolean_rejects(raw: Any) -> None:
    with pytest.raises(ValueError, match="is not a boolean"):
        from_wire(BOOL, raw)


@pytest.mark.parametrize(
    ("spec", "raw", "value"),
    [
        (LEVEL, 42, 42), (LEVEL, 42.0, 42), (LEVEL, "42", 42), (LEVEL, " 42 ", 42),
        (LEVEL, "4.2e1", 42), (LEVEL, 2.5, 2.5), (LEVEL, "-3", -3),
        (TEMP, 21, 21.0), (TEMP, "21.5", 21.5), (TEMP, 21.5, 21.5), (TEMP, "1e-7", 1e-07),
        (FREE_NUMBER, "10", 10.0), (LEVEL, "12345678901234567890", 12345678901234567890),
    ],
)
def test_from_wire_number(spec: TraitSpec, raw: Any, value: float) -> None:
    result = from_wire(spec, raw)
    assert result == value
    assert type(result) is type(value)


@pytest.mark.parametrize(
    "raw", [True, False, "abc", "", "nan", "NaN", "inf", "Infinity", "0x10", "1_000", "1e400",
            math.nan, math.inf, [1], {"v": 1}],
)
def test_from_wire_number_rejects(raw: Any) -> None:
    with pytest.raises(ValueError, match=r"number|range"):
        from_wire(TEMP, raw)


def test_from_wire_number_overflow_for_float_spec() -> None:
    with pytest.raises(ValueError, match="out of range"):
        from_wire(TEMP, 10**400)
    with pytest.raises(ValueError, match="out of range"):
        from_wire(TEMP, "1" * 400)


def test_from_wire_string() -> None:
    assert from_wire(TEXT, "hello ") == "hello "
    assert from_wire(TEXT, 5) == "5"
    assert from_wire(TEXT, 2.5) == "2.5"
    assert from_wire(TEXT, True) == "true"
    with pytest.raises(ValueError, match="not a string"):
        from_wire(TEXT, {"a": 1})


def test_from_wire_enum() -> None:
    assert from_wire(MODE, "1") == "1"
    assert from_wire(MODE, 4) == "4"
    assert from_wire(MODE, 4.0) == "4"
    assert from_wire(MODE, "Cool") == "1"  # a label instead of the value
    assert from_wire(MODE, "9") == "9"  # unknown values pass through (the hub knows best)
    assert from_wire(OPEN_ENUM, "x") == "x"
    bad: Any
    for bad in (True, 1.5, [], {}):
        with pytest.raises(ValueError, match="not an enum value"):
            from_wire(MODE, bad)


def test_from_wire_other() -> None:
    assert from_wire(OTHER, '{"a": [1, 2]}') == {"a": [1, 2]}
    assert from_wire(OTHER, "[1]") == [1]
    assert from_wire(OTHER, {"a": 1}) == {"a": 1}
    assert from_wire(OTHER, [1, "x"]) == [1, "x"]
    assert from_wire(OTHER, "not json") == "not json"
    assert from_wire(OTHER, 5) == 5
    with pytest.raises(ValueError, match="not JSON"):
        from_wire(OTHER, {"a": math.nan})
    with pytest.raises(ValueError, match="not JSON"):
        from_wire(OTHER, {"a": object()})


@pytest.mark.parametrize("spec", [BOOL, LEVEL, TEMP, MODE, TEXT, OTHER])
def test_from_wire_none_is_unknown(spec: TraitSpec) -> None:
    assert from_wire(spec, None) is None


# ---- model → payload / JSON / hub -------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "value", "payload"),
    [
        (BOOL, True, "true"), (BOOL, False, "false"), (LEVEL, 42, "42"), (TEMP, 21.0, "21"),
        (TEMP, 21.5, "21.5"), (TEMP, 1e-07, "0.0000001"), (FREE_NUMBER, -0.0, "0"),
        (MODE, "1", "Cool"), (MODE, "9", "9"), (OPEN_ENUM, "x", "x"), (TEXT, " hi ", " hi "),
        (TEXT, "", '""'), (TEXT, '"quoted"', '"\\"quoted\\""'), (TEXT, 'a"b', 'a"b'),
        (OTHER, {"a": [1, 2], "b": "é"}, '{"a":[1,2],"b":"é"}'),
        (OTHER, [], "[]"), (OTHER, "raw", "raw"), (BOOL, None, "null"), (MODE, None, "null"),
    ],
)
def test_to_payload(spec: TraitSpec, value: Any, payload: str) -> None:
    assert to_payload(spec, value) == payload


def test_to_payload_is_total() -> None:
    assert to_payload(OTHER, {"a": math.nan}) == '{"a":NaN}'
    assert to_payload(OTHER, {"a": {1, 2}}).startswith('{"a":')


def test_to_json_value() -> None:
    assert to_json_value(MODE, "4") == "Heat"
    assert to_json_value(MODE, "7") == "7"
    assert to_json_value(TEMP, 21.0) == 21
    assert isinstance(to_json_value(TEMP, 21.0), int)
    assert to_json_value(TEMP, 21.5) == 21.5
    assert to_json_value(BOOL, True) is True
    assert to_json_value(TEXT, "x") == "x"
    assert to_json_value(OTHER, {"a": 1}) == {"a": 1}
    assert to_json_value(LEVEL, None) is None
    assert to_json_value(TEMP, math.nan) is None


def test_to_studio_wire() -> None:
    assert to_studio_wire(BOOL, True) is True
    assert to_studio_wire(LEVEL, 42) == 42
    assert isinstance(to_studio_wire(LEVEL, 42.0), int)
    assert isinstance(to_studio_wire(TEMP, 21.0), float)
    assert to_studio_wire(MODE, "4") == "4"
    assert to_studio_wire(MODE, 4) == "4"
    assert to_studio_wire(TEXT, "hi") == "hi"
    assert to_studio_wire(OTHER, {"a": 1}) == {"a": 1}


def test_to_string_wire() -> None:
    assert to_string_wire(BOOL, True) == "1"
    assert to_string_wire(BOOL, False) == "0"
    assert to_string_wire(LEVEL, 42) == "42"
    assert to_string_wire(TEMP, 21.0) == "21"
    assert to_string_wire(TEMP, 1e-07) == "0.0000001"
    assert to_string_wire(MODE, "4") == "4"
    assert to_string_wire(TEXT, " a ") == " a "
    assert to_string_wire(OTHER, {"a": [1]}) == '{"a":[1]}'
    assert to_string_wire(OTHER, None) == ""


# ---- decode_set -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "current", "value"),
    [
        ("ON", None, True), ("OFF", None, False), ("on", None, True), ("off", None, False),
        ("On", None, True), ("true", None, True), ("false", None, False), ("TRUE", None, True),
        ("1", None, True), ("0", None, False), (b"true", None, True), (" ON\n", None, True),
        ('"ON"', None, True), ('{"value": true}', None, True), ('{"value": "OFF"}', None, False),
        ('{"value": 0}', None, False), ("toggle", True, False), ("TOGGLE", False, True),
        ('"toggle"', False, True),
    ],
)
def test_decode_boolean(payload: str | bytes, current: Any, value: bool) -> None:
    assert decode_set(BOOL, payload, current=current) is value


def test_decode_boolean_enum_labels() -> None:
    assert decode_set(BOOL_LABELLED, "Open") is True
    assert decode_set(BOOL_LABELLED, "closed") is False
    assert decode_set(BOOL_LABELLED, "ON") is True


@pytest.mark.parametrize("payload", ["2", "yes", "null", "[]", "1.5", '{"value": 2}', '{"v": 1}',
                                     '{"value": true, "x": 1}'])
def test_decode_boolean_rejects(payload: str) -> None:
    reason = rejected(BOOL, payload, where="2.Output.OnOff")
    assert "is not a boolean for 2.Output.OnOff" in reason


def test_toggle_needs_current() -> None:
    assert rejected(BOOL, "toggle", where="2.Output.OnOff") == (
        "cannot toggle for 2.Output.OnOff: current value unknown"
    )
    assert rejected(BOOL, "toggle", current="1") == "cannot toggle: current value unknown"


@pytest.mark.parametrize(
    ("spec", "payload", "value"),
    [
        (LEVEL, "42", 42), (LEVEL, "42.0", 42), (LEVEL, "+42", 42), (LEVEL, " 42 ", 42),
        (LEVEL, '{"value": 42}', 42), (LEVEL, '"42"', 42), (LEVEL, "0", 0), (LEVEL, "100", 100),
        (LEVEL, "1e2", 100), (LEVEL, "42.", 42),
        (TEMP, "21.5", 21.5), (TEMP, "21", 21.0), (TEMP, "5", 5.0), (TEMP, "30.0", 30.0),
        (TEMP, "21.000000001", 21.0),  # float noise is snapped to the step grid
        (FREE_NUMBER, "-1e-7", -1e-07), (FREE_NUMBER, ".5", 0.5),
    ],
)
def test_decode_number(spec: TraitSpec, payload: str, value: float) -> None:
    result = decode_set(spec, payload)
    assert result == value
    assert type(result) is type(value)


@pytest.mark.parametrize(
    ("spec", "payload", "reason"),
    [
        (LEVEL, "150", f"value 150 is above the maximum 100 for {WHERE}"),
        (LEVEL, "-1", f"value -1 is below the minimum 0 for {WHERE}"),
        (TEMP, "4.5", f"value 4.5 is below the minimum 5 for {WHERE}"),
        (TEMP, "30.5", f"value 30.5 is above the maximum 30 for {WHERE}"),
        (LEVEL, "2.5", f"value 2.5 is not a whole number for {WHERE}"),
        (LEVEL, "true", f"value true is not a number for {WHERE}"),
        (LEVEL, '{"value": false}', f"value false is not a number for {WHERE}"),
        (LEVEL, "abc", f"value 'abc' is not a number for {WHERE}"),
        (LEVEL, "NaN", f"value 'NaN' is not a number for {WHERE}"),
        (LEVEL, "Infinity", f"value 'Infinity' is not a number for {WHERE}"),
        (LEVEL, "-Infinity", f"value '-Infinity' is not a number for {WHERE}"),
        (LEVEL, "inf", f"value 'inf' is not a number for {WHERE}"),
        (TEMP, "1e400", f"value '1e400' is out of range for {WHERE}"),
        (LEVEL, "0x10", f"value '0x10' is not a number for {WHERE}"),
        (LEVEL, "1_0", f"value '1_0' is not a number for {WHERE}"),
        (LEVEL, "null", f"value null is not a number for {WHERE}"),
        (LEVEL, "[1]", f"value [1] is not a number for {WHERE}"),
        (LEVEL, "1" * 5000, f"value '{'1' * 60}…' is out of range for {WHERE}"),
        (FREE_NUMBER, "1" * 400, f"value {'1' * 60}… is out of range for {WHERE}"),
    ],
)
def test_decode_number_rejects(spec: TraitSpec, payload: str, reason: str) -> None:
    assert rejected(spec, payload, where=WHERE) == reason


@pytest.mark.parametrize(
    ("payload", "value"),
    [
        ("Cool", "1"), ("cool", "1"), ("COOL", "1"), ("1", "1"), ("4", "4"), ('"Heat"', "4"),
        ('{"value": "Auto"}', "0"), ('{"value": 4}', "4"), ('"4"', "4"), ("4.0", "4"),
        (" Heat ", "4"),
    ],
)
def test_decode_enum(payload: str, value: str) -> None:
    assert decode_set(MODE, payload) == value


def test_decode_enum_labels_first_then_values() -> None:
    spec = TraitSpec(TraitType.ENUM, writable=True,
                     enums=(EnumOption("1", "0"), EnumOption("true", "2"), EnumOption('"q"', "3"),
                            EnumOption("[x]", "5"), EnumOption("0", "7"), EnumOption("x", "1")))
    assert decode_set(spec, "1") == "0"  # the label "1" wins over the wire value "1"
    assert decode_set(spec, "x") == "1"
    assert decode_set(spec, "true") == "2"
    assert decode_set(spec, '"q"') == "3"
    assert decode_set(spec, "[x]") == "5"
    assert decode_set(spec, "7") == "7"
    assert decode_set(spec, "0") == "7"


def test_decode_enum_rejects() -> None:
    reason = rejected(MODE, "Dry", where="1.Thermostat.Mode")
    assert reason == "value 'Dry' is not one of Auto (0), Cool (1), Heat (4) for 1.Thermostat.Mode"
    assert "is not one of" in rejected(MODE, '"Dry"')
    assert "is not an enum value" in rejected(MODE, '{"value": true}')
    assert "is not one of" in rejected(MODE, "1.5")


def test_decode_enum_lists_at_most_twenty_options() -> None:
    spec = TraitSpec(TraitType.ENUM, writable=True,
                     enums=tuple(EnumOption(f"k{i}", str(i)) for i in range(30)))
    reason = rejected(spec, "nope")
    assert "k19 (19), …" in reason
    assert "k20" not in reason


def test_decode_enum_without_options_accepts_anything() -> None:
    assert decode_set(OPEN_ENUM, "whatever") == "whatever"
    assert decode_set(OPEN_ENUM, "3") == "3"


@pytest.mark.parametrize(
    ("payload", "value"),
    [
        ("hello", "hello"), (" spaced ", " spaced "), ("   ", "   "), ('"quoted"', "quoted"),
        ('""', ""), ('{"value": "x"}', "x"), ('{"value": 5}', "5"), ('{"value": true}', "true"),
        ("42", "42"), ("null", "null"), ('{"a": 1}', '{"a": 1}'), ("[1, 2]", "[1, 2]"),
        ('"unterminated', '"unterminated'), ("line\nbreak", "line\nbreak"),
        (b"caf\xc3\xa9", "café"),
    ],
)
def test_decode_string(payload: str | bytes, value: str) -> None:
    assert decode_set(TEXT, payload) == value


def test_decode_string_rejects_wrapped_objects() -> None:
    assert "is not a string" in rejected(TEXT, '{"value": {"a": 1}}')
    assert "is not a string" in rejected(TEXT, '{"value": null}')


@pytest.mark.parametrize(
    ("payload", "value"),
    [
        ('{"a": 1}', {"a": 1}), ("[1, 2]", [1, 2]), ('{"value": {"a": 1}}', {"a": 1}),
        ('{"value": [1]}', [1]), ('{"value": 5}', {"value": 5}), ("{}", {}),
    ],
)
def test_decode_other(payload: str, value: Any) -> None:
    assert decode_set(OTHER, payload) == value


@pytest.mark.parametrize("payload", ["5", '"x"', "true", "null", "not json", '{"a": NaN}'])
def test_decode_other_rejects(payload: str) -> None:
    assert "is not a JSON object or array" in rejected(OTHER, payload)


def test_read_only_is_checked_first() -> None:
    assert rejected(BOOL_RO, "ON", where="2.Output.OnOff") == "trait 2.Output.OnOff is read-only"
    assert rejected(BOOL_RO, "garbage") == "trait is read-only"
    assert rejected(BOOL_RO, b"") == "trait is read-only"


@pytest.mark.parametrize("spec", [BOOL, LEVEL, MODE, TEXT, OTHER])
def test_empty_payload_is_rejected(spec: TraitSpec) -> None:
    assert rejected(spec, b"", where="x") == "empty payload for x"
    assert rejected(spec, "") == "empty payload"


@pytest.mark.parametrize("spec", [BOOL, LEVEL, MODE, OTHER])
def test_blank_payload_is_rejected(spec: TraitSpec) -> None:
    assert rejected(spec, " \n") == "empty payload"


def test_payload_size_limit() -> None:
    assert decode_set(TEXT, "x" * MAX_SET_PAYLOAD) == "x" * MAX_SET_PAYLOAD
    reason = rejected(TEXT, "x" * (MAX_SET_PAYLOAD + 1), where="1.A.B")
    assert reason == (
        f"payload for 1.A.B is {MAX_SET_PAYLOAD + 1} bytes, more than the limit of 65536"
    )
    assert "more than the limit" in rejected(TEXT, "é" * (MAX_SET_PAYLOAD // 2 + 1))
    assert "more than the limit" in rejected(OTHER, b"[" + b"0," * 40000 + b"0]")


def test_non_utf8_is_rejected() -> None:
    assert rejected(TEXT, b"\xff\xfe") == "payload is not valid UTF-8"
    assert rejected(BOOL, b"O\xc3N", where="x") == "payload for x is not valid UTF-8"
    assert rejected(TEXT, "a\ud800") == "payload is not valid UTF-8"


def test_decode_value_for_parsed_json() -> None:
    assert decode_value(BOOL, True) is True
    assert decode_value(BOOL, "ON") is True
    assert decode_value(LEVEL, 42) == 42
    assert decode_value(MODE, "Heat") == "4"
    assert decode_value(MODE, 4) == "4"
    assert decode_value(TEXT, "  x") == "  x"
    assert decode_value(OTHER, {"value": [1]}) == [1]
    with pytest.raises(WriteRejected, match="read-only"):
        decode_value(BOOL_RO, True)
    with pytest.raises(WriteRejected, match="above the maximum"):
        decode_value(LEVEL, 1000)
    with pytest.raises(WriteRejected, match="value inf is not a finite number"):
        decode_value(TEMP, math.inf)
    with pytest.raises(WriteRejected, match="not a number"):
        decode_value(TEMP, None)
    with pytest.raises(WriteRejected, match="not a string"):
        decode_value(TEXT, math.nan)


# ---- decode_device_set ------------------------------------------------------------------------


def test_decode_device_set() -> None:
    payload = b'{"2": {"Output": {"OnOff": "ON"}}, "1": {"LevelControl": {"CurrentLevel": 40,' \
              b' "X": {"value": 3}}, "Light": {"Mode": "Cool"}}}'
    assert decode_device_set(payload) == [
        (2, "Output", "OnOff", '"ON"'),
        (1, "LevelControl", "CurrentLevel", "40"),
        (1, "LevelControl", "X", '{"value":3}'),
        (1, "Light", "Mode", '"Cool"'),
    ]


def test_device_set_values_decode_like_trait_sets() -> None:
    entries = decode_device_set('{"2": {"A": {"B": "toggle", "C": 40, "D": "Heat", "E": "t",'
                                ' "F": {"x": 1}}}}')
    specs = [BOOL, LEVEL, MODE, TEXT, OTHER]
    values = [decode_set(spec, raw, current=True) for spec, (_, _, _, raw) in zip(specs, entries,
                                                                                 strict=True)]
    assert values == [False, 40, "4", "t", {"x": 1}]


FIRMWARE = TraitSpec(TraitType.STRING)
MODE_RO = TraitSpec(TraitType.ENUM, format="uint8",
                    enums=(EnumOption("Auto", "0"), EnumOption("Cool", "1")))
POWER = TraitSpec(TraitType.NUMBER, format="float", unit="W")
INFO = TraitSpec(TraitType.OTHER)


@pytest.mark.parametrize(("spec", "value_json", "current", "echoed"), [
    (FIRMWARE, '"1.0.3"', "1.0.3", True),
    (FIRMWARE, '"1.0.4"', "1.0.3", False),  # a real attempt to change it
    (BOOL_RO, "true", True, True),
    (BOOL_RO, "1", True, False),  # JSON types count: 1 is not true
    (POWER, "21", 21.0, True),  # JavaScript writes 21.0 back as 21
    (POWER, "21.5", 21.0, False),
    (MODE_RO, '"Cool"', "1", True),  # the document's label
    (MODE_RO, '"1"', "1", True),  # or the wire value
    (MODE_RO, '"Auto"', "1", False),
    (INFO, '{"a":[1,true]}', {"a": [1, True]}, True),
    (INFO, '{"a":[1,1]}', {"a": [1, True]}, False),
    (FIRMWARE, '"1.0.3"', None, False),  # no current value to equal
    (TEXT, '"t"', "t", False),  # writable: written as any member, never ignored
])
def test_a_read_only_member_with_its_current_value_is_an_echo(
        spec: TraitSpec, value_json: str, current: Any, echoed: bool) -> None:
    assert echoes_read_only(spec, value_json, current) is echoed


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("", "empty payload"),
        ("nope", "device payload is not JSON"),
        ("[1]", "device payload must be a JSON object"),
        ("5", "device payload must be a JSON object"),
        ("{}", "device payload names no traits"),
        ('{"2": {}}', "device payload names no traits"),
        ('{"x": {"A": {"B": 1}}}', "endpoint id 'x' is not an integer"),
        ('{"-1": {"A": {"B": 1}}}', "endpoint id '-1' is not an integer"),
        ('{"2": 5}', "2 must be an object of function codes, got 5"),
        ('{"2": {"A": [1]}}', "2.A must be an object of trait codes, got [1]"),
        ('{"2": {"": {"B": 1}}}', "2 has an empty function code"),
        ('{"2": {"A": {"": 1}}}', "2.A has an empty trait code"),
        ('{"2": {"A": {"B": NaN}}}', "device payload is not JSON"),
    ],
)
def test_decode_device_set_rejects(payload: str, reason: str) -> None:
    with pytest.raises(WriteRejected) as info:
        decode_device_set(payload)
    assert info.value.reason.startswith(reason)


def test_decode_device_set_limits() -> None:
    with pytest.raises(WriteRejected, match="not valid UTF-8"):
        decode_device_set(b'{"2": {"A": {"B": "\xff"}}}')
    with pytest.raises(WriteRejected, match="more than the limit"):
        decode_device_set('{"2": {"A": {"B": "' + "x" * MAX_SET_PAYLOAD + '"}}}')


# ---- properties -------------------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)


def number_specs() -> st.SearchStrategy[TraitSpec]:
    return st.builds(
        TraitSpec,
        type=st.just(TraitType.NUMBER),
        format=st.sampled_from(["", "int32", "uint8", "float", "double"]),
        step=st.none() | st.sampled_from([1, 0.5, 0.1]),
        writable=st.just(True),
    )


def enum_specs() -> st.SearchStrategy[TraitSpec]:
    keys = st.text(min_size=1, max_size=12).map(str.strip).filter(bool)
    values = st.text(alphabet="0123456789abc", min_size=1, max_size=3)
    options = st.lists(st.tuples(keys, values), min_size=1, max_size=8,
                       unique_by=(lambda o: o[0].casefold(), lambda o: o[1]))
    return options.map(lambda opts: TraitSpec(
        TraitType.ENUM, writable=True, enums=tuple(EnumOption(k, v) for k, v in opts)))


@st.composite
def spec_and_value(draw: st.DrawFn) -> tuple[TraitSpec, Any]:
    kind = draw(st.sampled_from(list(TraitType)))
    if kind is TraitType.BOOLEAN:
        return BOOL, draw(st.booleans())
    if kind is TraitType.NUMBER:
        spec = draw(number_specs())
        if spec.is_integer:
            return spec, draw(st.integers(min_value=-(2**63), max_value=2**63))
        if spec.step is not None:  # values on the step grid, as a device reports them
            units = draw(st.integers(min_value=-(10**12), max_value=10**12))
            return spec, float(Decimal(units) * Decimal(repr(float(spec.step))))
        return spec, draw(finite)
    if kind is TraitType.ENUM:
        spec = draw(enum_specs())
        return spec, draw(st.sampled_from(spec.enums)).value
    if kind is TraitType.STRING:
        text = draw(st.text(min_size=1))
        assume(text.strip()[:1] not in ('"', "{"))  # JSON strings and wrappers are unquoted
        return TEXT, text
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | finite | st.text(),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children),
        max_leaves=10,
    )
    value = draw(st.lists(json_values) | st.dictionaries(st.text(), json_values))
    assume(not (isinstance(value, dict) and list(value) == ["value"]))  # the wrapper
    return OTHER, value


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same type (so 1 is not True)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True) and type(a) is type(b)


@given(spec_and_value())
@example((TEXT, "  leading and trailing  "))
@example((TEXT, "null"))
@example((FREE_NUMBER, 1e-07))
@example((FREE_NUMBER, -0.0))
@example((LEVEL, 0))
def test_payload_round_trips_through_set(case: tuple[TraitSpec, Any]) -> None:
    spec, value = case
    payload = to_payload(spec, value)
    decoded = decode_set(spec, payload.encode())
    assert same(decoded, value) or (value == 0 and decoded == 0)


@given(spec_and_value())
def test_device_set_round_trips(case: tuple[TraitSpec, Any]) -> None:
    spec, value = case
    document = {"1": {"F": {"T": to_json_value(spec, value)}}}
    [(_, _, _, raw)] = decode_device_set(json.dumps(document))
    decoded = decode_set(spec, raw)
    assert decoded == value


@given(spec_and_value())
def test_wire_round_trips(case: tuple[TraitSpec, Any]) -> None:
    spec, value = case
    assert same(from_wire(spec, to_studio_wire(spec, value)), value) or value == 0
    assert from_wire(spec, to_string_wire(spec, value)) == value
    json.dumps(to_json_value(spec, value), allow_nan=False)  # always valid JSON


@given(st.sampled_from([BOOL, BOOL_LABELLED, LEVEL, TEMP, FREE_NUMBER, MODE, OPEN_ENUM, TEXT,
                        OTHER, BOOL_RO]),
       st.binary(max_size=64) | st.text(max_size=64).map(str.encode),
       st.none() | st.booleans())
@example(LEVEL, b"1e99999", None)
@example(OTHER, b"[" * 100000, None)
def test_decode_set_only_raises_write_rejected(spec: TraitSpec, payload: bytes,
                                               current: bool | None) -> None:
    try:
        value = decode_set(spec, payload, current=current)
    except WriteRejected as exc:
        reason = exc.reason
        assert reason
        return
    if spec.type is TraitType.NUMBER:
        assert isinstance(value, int | float)
        assert not isinstance(value, bool)
        assert math.isfinite(value)
        if spec.min is not None:
            assert value >= spec.min
        if spec.max is not None:
            assert value <= spec.max
    elif spec.type is TraitType.BOOLEAN:
        assert isinstance(value, bool)
    elif spec.type is TraitType.ENUM:
        assert isinstance(value, str)
        assert not spec.enums or value in {o.value for o in spec.enums}
    elif spec.type is TraitType.STRING:
        assert isinstance(value, str)
    else:
        assert isinstance(value, dict | list)


@given(st.text(max_size=80) | st.binary(max_size=80))
@example('{"1": {"A": {"B": [[[[1]]]]}}}')
def test_decode_device_set_only_raises_write_rejected(payload: str | bytes) -> None:
    try:
        entries = decode_device_set(payload)
    except WriteRejected:
        return
    assert entries
    for endpoint, function_code, trait_code, raw in entries:
        assert endpoint >= 0
        assert function_code
        assert trait_code
        json.loads(raw)


@given(st.sampled_from([BOOL, LEVEL, TEMP, MODE, TEXT, OTHER]),
       st.none() | st.booleans() | st.integers() | st.floats() | st.text()
       | st.lists(st.integers()) | st.dictionaries(st.text(), st.integers()))
def test_from_wire_only_raises_value_error(spec: TraitSpec, raw: Any) -> None:
    try:
        value = from_wire(spec, raw)
    except ValueError:
        return
    to_payload(spec, value)
    to_json_value(spec, value)
    to_string_wire(spec, value)
    to_studio_wire(spec, value)


@pytest.mark.parametrize(
    ("spec", "payload", "message"),
    [
        (TEMP, "21.3", "value 21.3 is not on the step 0.5 (nearest valid: 21 or 21.5)"),
        (TEMP, "29.9", "value 29.9 is not on the step 0.5 (nearest valid: 29.5 or 30)"),
        (TraitSpec(TraitType.NUMBER, format="int32", min=153, max=370, step=5, writable=True),
         "250", "value 250 is not on the step 5 (nearest valid: 248 or 253)"),
        (TraitSpec(TraitType.NUMBER, format="float", min=0, max=1, step=0.4, writable=True),
         "0.9", "value 0.9 is not on the step 0.4 (nearest valid: 0.8)"),
    ],
)
def test_off_step_values_are_rejected_with_the_nearest_valid_ones(
        spec: TraitSpec, payload: str, message: str) -> None:
    assert rejected(spec, payload) == message
    with pytest.raises(WriteRejected):
        decode_value(spec, float(payload))  # the device JSON path checks the same


def test_step_snaps_float_noise_and_big_integers_exactly() -> None:
    tenth = TraitSpec(TraitType.NUMBER, format="float", step=0.1, writable=True)
    assert decode_set(tenth, "0.30000000000000004") == 0.3
    assert decode_set(tenth, "45024418611.1") == 45024418611.1  # on the grid, float error aside
    big = TraitSpec(TraitType.NUMBER, format="int64", step=2, writable=True)
    assert decode_set(big, str(2**62)) == 2**62
    assert "step 2" in rejected(big, str(2**62 + 1))
