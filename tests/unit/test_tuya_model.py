"""Tuya DPs → the common model: functions, specs, value scaling both ways."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.backends.tuya.model import (
    DpSpec,
    TuyaSpec,
    build_device,
    from_tuya,
    function_for,
    parse_spec,
    parse_values,
    status_map,
    to_tuya,
    trait_spec,
)
from bridge.model import EnumOption, TraitType


def integer(scale: int, low: int = 0, high: int = 1000, step: int = 1, unit: str = "",
            writable: bool = True) -> DpSpec:
    values = {"min": low, "max": high, "scale": scale, "step": step, "unit": unit}
    return DpSpec("x", "Integer", values, readable=True, writable=writable)


@pytest.mark.parametrize(("code", "category", "function"), [
    ("switch_1", "cz", "switch"),
    ("switch", "cz", "switch"),
    ("countdown_1", "cz", "switch"),
    ("cur_power", "cz", "power"),
    ("cur_voltage", "cz", "power"),
    ("cur_current", "pc", "power"),
    ("add_ele", "cz", "power"),
    ("switch_led", "dj", "light"),
    ("bright_value_v2", "dj", "light"),
    ("temp_value_v2", "xyz", "light"),
    ("colour_data_v2", "dj", "light"),
    ("work_mode", "dj", "light"),
    ("control", "cl", "cover"),
    ("percent_control", "qt", "cover"),
    ("percent_state", "qt", "cover"),
    ("mode", "qt", "cover"),  # by category: the seed's curtain
    ("countdown", "qt", "cover"),
    ("fault", "qt", "cover"),
    ("va_temperature", "wsdcg", "sensor"),
    ("va_humidity", "wsdcg", "sensor"),
    ("battery_percentage", "wsdcg", "battery"),
    ("temp_set", "wk", "climate"),
    ("temp_current", "wk", "sensor"),
    ("whatever", "zzz", "device"),
])
def test_function_for(code: str, category: str, function: str) -> None:
    assert function_for(code, category) == function


def test_parse_values() -> None:
    assert parse_values('{"min":0,"max":10}') == {"min": 0, "max": 10}
    assert parse_values({"range": ["a"]}) == {"range": ["a"]}
    assert parse_values("") == {}
    assert parse_values("{not json") == {}
    assert parse_values("[1]") == {}
    assert parse_values(None) == {}


def test_parse_spec_merges_functions_and_status() -> None:
    spec = parse_spec({
        "category": "cz",
        "functions": [{"code": "switch_1", "type": "Boolean", "values": "{}"},
                      {"code": "countdown_1", "type": "Integer",
                       "values": '{"unit":"s","min":0,"max":86400,"scale":0,"step":1}'},
                      {"code": "only_write", "type": "Enum", "values": '{"range":["a","b"]}'},
                      {"type": "Boolean"}, "junk"],
        "status": [{"code": "switch_1", "type": "Boolean", "values": "{}"},
                   {"code": "countdown_1", "type": "Integer", "values": '{"max":5}'},
                   {"code": "cur_power", "type": "Integer",
                    "values": '{"unit":"W","min":0,"max":99999,"scale":1,"step":1}'}],
    })
    assert spec.category == "cz"
    dps = spec.dps
    assert set(dps) == {"switch_1", "countdown_1", "only_write", "cur_power"}
    assert dps["switch_1"].readable
    assert dps["switch_1"].writable
    assert dps["countdown_1"].values["max"] == 86400  # the function's range wins
    assert not dps["only_write"].readable
    assert dps["only_write"].writable
    assert dps["cur_power"].readable
    assert not dps["cur_power"].writable


def test_parse_spec_functions_only_are_readable_too() -> None:
    spec = parse_spec({"category": "dj", "functions": [
        {"code": "switch_led", "type": "Boolean", "values": "{}"}]})
    assert spec.dps["switch_led"].readable
    assert spec.dps["switch_led"].writable
    assert parse_spec("nope").dps == {}
    assert parse_spec({"functions": "nope"}).dps == {}


def test_integer_spec_is_scaled() -> None:
    spec = trait_spec(integer(1, -200, 600, 1, "℃", writable=False))
    assert spec.type is TraitType.NUMBER
    assert (spec.min, spec.max, spec.step, spec.unit) == (-20.0, 60.0, 0.1, "℃")
    assert spec.format == "float"
    assert not spec.is_integer
    assert spec.readable
    assert not spec.writable
    assert spec.subscribable
    plain = trait_spec(integer(0, 10, 1000))
    assert (plain.min, plain.max, plain.step) == (10, 1000, 1)
    assert plain.is_integer
    assert plain.writable
    assert trait_spec(integer(2, 0, 12345, 5)).max == 123.45
    assert trait_spec(integer(2, 0, 12345, 5)).step == 0.05


def test_other_types() -> None:
    enum = trait_spec(DpSpec("mode", "Enum", {"range": ["morning", "night"]}, writable=True))
    assert enum.type is TraitType.ENUM
    assert enum.enums == (EnumOption("morning", "morning"), EnumOption("night", "night"))
    assert trait_spec(DpSpec("s", "Boolean")).type is TraitType.BOOLEAN
    assert trait_spec(DpSpec("s", "String", {"maxlen": 255})).type is TraitType.STRING
    raw = trait_spec(DpSpec("s", "Raw"))
    assert (raw.type, raw.format) == (TraitType.STRING, "raw")
    assert trait_spec(DpSpec("c", "Json")).type is TraitType.OTHER
    bitmap = trait_spec(DpSpec("fault", "Bitmap", {"label": ["a", "b", "c"], "maxlen": 3}))
    assert (bitmap.type, bitmap.min, bitmap.max, bitmap.is_integer) == (
        TraitType.NUMBER, 0, 7, True)
    odd = trait_spec(DpSpec("q", "Weird"))
    assert (odd.type, odd.format) == (TraitType.OTHER, "weird")


@pytest.mark.parametrize(("dp", "raw", "value"), [
    (DpSpec("b", "Boolean"), True, True),
    (DpSpec("b", "Boolean"), "true", True),  # seed 002's stringified listings
    (DpSpec("b", "Boolean"), "false", False),
    (DpSpec("b", "Boolean"), 0, False),
    (integer(0), "0", 0),
    (integer(0), 42, 42),
    (integer(1), 215, 21.5),
    (integer(1), "215", 21.5),
    (integer(1), -5, -0.5),
    (integer(3), 1, 0.001),
    (DpSpec("e", "Enum", {"range": ["1", "2"]}), "2", "2"),
    (DpSpec("e", "Enum", {"range": ["1", "2"]}), 2, "2"),
    (DpSpec("s", "String"), "abc", "abc"),
    (DpSpec("j", "Json"), '{"h":0,"s":1000,"v":1000}', {"h": 0, "s": 1000, "v": 1000}),
    (DpSpec("j", "Json"), {"h": 1}, {"h": 1}),
    (DpSpec("j", "Json"), "not json", "not json"),
    (DpSpec("f", "Bitmap"), "0", 0),
])
def test_from_tuya(dp: DpSpec, raw: Any, value: Any) -> None:
    result = from_tuya(dp, raw)
    assert result == value
    assert type(result) is type(value)


@pytest.mark.parametrize(("dp", "raw"), [
    (DpSpec("b", "Boolean"), "maybe"),
    (DpSpec("b", "Boolean"), 7),
    (integer(0), "ten"),
    (integer(0), True),
    (DpSpec("f", "Bitmap"), 1.5),
    (DpSpec("e", "Enum"), ["x"]),
])
def test_from_tuya_refuses(dp: DpSpec, raw: Any) -> None:
    with pytest.raises(ValueError, match="is not"):
        from_tuya(dp, raw)


def test_to_tuya_unscales_and_rounds() -> None:
    assert to_tuya(integer(1), 21.5) == 215
    assert to_tuya(integer(1), 21) == 210
    assert to_tuya(integer(1), 0.1) == 1
    assert to_tuya(integer(2), 1.005) == 100  # 100.5 → half to even
    assert to_tuya(integer(0), 7) == 7
    assert to_tuya(DpSpec("b", "Boolean"), True) is True
    assert to_tuya(DpSpec("e", "Enum"), "open") == "open"
    assert to_tuya(DpSpec("j", "Json"), {"h": 1}) == {"h": 1}
    with pytest.raises(ValueError, match="not a number"):
        to_tuya(integer(0), "x")


@given(st.integers(-10**9, 10**9), st.integers(0, 6))
def test_integer_round_trip(raw: int, scale: int) -> None:
    dp = integer(scale)
    assert to_tuya(dp, from_tuya(dp, raw)) == raw


def test_status_map() -> None:
    assert status_map([{"code": "a", "value": 1}, {"code": "b"}, {"value": 3}, "x"]) == {
        "a": 1, "b": None}
    assert status_map({"a": 1}) == {"a": 1}
    assert status_map(None) == {}


SEED_CURTAIN = json.loads("""{
 "uuid":"vdevo154017769539389","uid":"ay1528964101460qLVPu","name":"All-in-one curtain",
 "ip":null,"sub":false,
 "status":[{"code":"control","value":"open"},{"code":"percent_control","value":"0"},
  {"code":"percent_state","value":"0"},{"code":"mode","value":"morning"},
  {"code":"control_back","value":"false"},{"code":"auto_power","value":"false"},
  {"code":"work_state","value":"opening"},{"code":"countdown","value":"2"},
  {"code":"countdown_left","value":"0"},{"code":"fault","value":"0"},
  {"code":"time_total","value":"0"}],
 "category":"qt","online":true,"id":"vdevo154017769539389","time_zone":"+08:00",
 "local_key":"75bc0238e71ef011","owner_id":"2422120","product_id":"9ysAXds4ohDAnXwh"}""")


def curtain_spec() -> TuyaSpec:
    def dp(code: str, kind: str, values: dict[str, Any], writable: bool = True) -> dict[str, Any]:
        return {"code": code, "type": kind, "values": json.dumps(values), "w": writable}

    entries = [
        dp("control", "Enum", {"range": ["open", "stop", "close", "continue"]}),
        dp("percent_control", "Integer", {"min": 0, "max": 100, "scale": 0, "step": 1}),
        dp("percent_state", "Integer", {"min": 0, "max": 100, "scale": 0, "step": 1}, False),
        dp("mode", "Enum", {"range": ["morning", "night"]}),
        dp("control_back", "Boolean", {}),
        dp("auto_power", "Boolean", {}),
        dp("work_state", "Enum", {"range": ["opening", "closing"]}, False),
        dp("countdown", "Enum", {"range": ["cancel", "1", "2", "3", "4"]}),
        dp("countdown_left", "Integer", {"min": 0, "max": 86400, "scale": 0, "step": 1}, False),
        dp("fault", "Bitmap", {"label": ["motor_fault"], "maxlen": 1}, False),
        dp("time_total", "Integer", {"min": 0, "max": 120000, "scale": 0, "step": 1}, False),
    ]
    return parse_spec({"category": "qt", "functions": [e for e in entries if e["w"]],
                       "status": entries})


def test_seed_curtain_becomes_one_device_with_typed_values() -> None:
    extra = {"home": "My Home", "home_id": 3182004, "room": "Living Room", "room_id": 1}
    device, bad = build_device(SEED_CURTAIN, curtain_spec(), "tuya",
                               status_map(SEED_CURTAIN["status"]), extra)
    assert bad == []
    assert device.id == "vdevo154017769539389"
    assert device.name == "All-in-one curtain"
    assert device.model == "9ysAXds4ohDAnXwh"
    assert device.types == ("qt",)
    assert device.online is True
    assert device.extra == extra
    assert list(device.endpoints) == [1]
    assert list(device.endpoints[1].functions) == ["cover"]
    values = {t.code: t.value for _a, t in device.iter_traits()}
    assert values == {"control": "open", "percent_control": 0, "percent_state": 0,
                      "mode": "morning", "control_back": False, "auto_power": False,
                      "work_state": "opening", "countdown": "2", "countdown_left": 0,
                      "fault": 0, "time_total": 0}
    control = device.trait(1, "cover", "control")
    assert control is not None
    assert control.spec.writable
    state = device.trait(1, "cover", "percent_state")
    assert state is not None
    assert not state.spec.writable


def test_unusable_values_are_reported_not_fatal() -> None:
    spec = parse_spec({"category": "cz", "functions": [
        {"code": "switch_1", "type": "Boolean", "values": "{}"}]})
    device, bad = build_device({"id": "d1", "name": "", "online": "false"}, spec, "tuya",
                               {"switch_1": "banana"})
    assert bad == ["switch_1"]
    assert device.name == "d1"
    assert device.online is False
    trait = device.trait(1, "switch", "switch_1")
    assert trait is not None
    assert trait.value is None
