"""The JSON documents the bridge publishes."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bridge import payloads
from bridge.model import Device, Endpoint, EnumOption, Function, Trait, TraitSpec, TraitType
from bridge.topics import TopicScheme

ONOFF = TraitSpec(TraitType.BOOLEAN, format="Bool", writable=True)
LEVEL = TraitSpec(TraitType.NUMBER, format="uint8", unit="%", min=0.0, max=100.0, step=1.0,
                  writable=True)
TEMP = TraitSpec(TraitType.NUMBER, format="float", unit="°C", subscribable=True)
MODE = TraitSpec(TraitType.ENUM, writable=True, default="0",
                 enums=(EnumOption("Auto", "0"), EnumOption("Cool", "1")))
SECRET = TraitSpec(TraitType.STRING, readable=False, writable=True, subscribable=False)
OTHER = TraitSpec(TraitType.OTHER)


def sample_device() -> Device:
    return Device(
        id="lumi1.54ef448a0b73",
        name="Kitchen switch",
        backend="studio",
        model="lumi.switch.acn047",
        types=("Switch",),
        online=True,
        extra={"room": "Kitchen", "id": "must not override", "endpoints": "nor this"},
        endpoints={
            0: Endpoint(0, ("Root",), {
                "BasicInformation": Function("BasicInformation", {
                    "FirmwareRevision": Trait("FirmwareRevision",
                                              TraitSpec(TraitType.STRING, format="String"),
                                              "1.0.5"),
                }),
            }),
            2: Endpoint(2, ("Switch",), {
                "Output": Function("Output", {"OnOff": Trait("OnOff", ONOFF, True)}),
                "LevelControl": Function("LevelControl", {
                    "CurrentLevel": Trait("CurrentLevel", LEVEL, 40),
                    "Unknown": Trait("Unknown", LEVEL, None),
                }),
                "Thermostat": Function("Thermostat", {
                    "Mode": Trait("Mode", MODE, "1"),
                    "Temp": Trait("Temp", TEMP, 21.0),
                    "Pin": Trait("Pin", SECRET, "1234"),
                    "Blob": Trait("Blob", OTHER, {"a": [1]}),
                }),
            }),
            3: Endpoint(3, (), {"Empty": Function("Empty", {
                "Nothing": Trait("Nothing", ONOFF, None)})}),
        },
    )


def test_device_state() -> None:
    state = payloads.device_state(sample_device())
    assert state == {
        "0": {"BasicInformation": {"FirmwareRevision": "1.0.5"}},
        "2": {
            "Output": {"OnOff": True},
            "LevelControl": {"CurrentLevel": 40},
            "Thermostat": {"Mode": "Cool", "Temp": 21, "Blob": {"a": [1]}},
        },
    }
    assert payloads.dumps(state).startswith('{"0":{"BasicInformation"')


def test_device_state_of_empty_device() -> None:
    assert payloads.device_state(Device("x", "x", "studio")) == {}


def test_device_info() -> None:
    info = payloads.device_info(sample_device(), "kitchen_switch", "kitchen_switch",
                                TopicScheme("aqara"))
    assert list(info)[:7] == ["id", "friendly_name", "topic", "name", "model", "types", "backend"]
    assert info["id"] == "lumi1.54ef448a0b73"
    assert info["friendly_name"] == "kitchen_switch"
    assert info["topic"] == "aqara/kitchen_switch"
    assert info["name"] == "Kitchen switch"
    assert info["model"] == "lumi.switch.acn047"
    assert info["types"] == ["Switch"]
    assert info["backend"] == "studio"
    assert "online" not in info  # availability has its own topic
    assert info["room"] == "Kitchen"
    assert [e["id"] for e in info["endpoints"]] == [0, 2, 3]
    endpoint = info["endpoints"][1]
    assert endpoint["types"] == ["Switch"]
    assert [f["code"] for f in endpoint["functions"]] == ["Output", "LevelControl", "Thermostat"]
    level = endpoint["functions"][1]["traits"][0]
    assert level == {
        "code": "CurrentLevel", "type": "NUMBER", "format": "uint8", "unit": "%", "min": 0,
        "max": 100, "step": 1, "readable": True, "writable": True, "subscribable": True,
        "topic": "aqara/kitchen_switch/2/LevelControl/CurrentLevel",
    }
    assert isinstance(level["max"], int)
    mode = endpoint["functions"][2]["traits"][0]
    assert mode["enums"] == [{"key": "Auto", "value": "0"}, {"key": "Cool", "value": "1"}]
    assert mode["default"] == "0"
    onoff = endpoint["functions"][0]["traits"][0]
    assert onoff == {"code": "OnOff", "type": "BOOLEAN", "format": "Bool", "readable": True,
                     "writable": True, "subscribable": True,
                     "topic": "aqara/kitchen_switch/2/Output/OnOff"}
    json.dumps(info, allow_nan=False)


def test_device_info_extra_never_overrides() -> None:
    info = payloads.device_info(sample_device(), "k", "k", TopicScheme("aqara"))
    assert info["id"] == "lumi1.54ef448a0b73"
    assert isinstance(info["endpoints"], list)


def test_device_info_with_scheme_gives_full_topics() -> None:
    scheme = TopicScheme("aqara")
    info = payloads.device_info(sample_device(), "my/switch", "my/switch", scheme)
    assert info["friendly_name"] == "my/switch"
    assert info["topic"] == "aqara/my_switch"
    trait = info["endpoints"][1]["functions"][0]["traits"][0]
    assert trait["topic"] == "aqara/my_switch/2/Output/OnOff"


def test_device_info_topics_are_sanitised() -> None:
    device = Device("d", "d", "tuya", endpoints={1: Endpoint(1, (), {
        "F/x": Function("F/x", {"T#": Trait("T#", ONOFF)})})})
    info = payloads.device_info(device, "bridge", "bridge", TopicScheme("aqara"))
    assert info["topic"] == "aqara/bridge_"
    assert info["endpoints"][0]["functions"][0]["traits"][0]["topic"] == (
        "aqara/bridge_/1/F_x/T_")


def test_log_entry() -> None:
    assert payloads.log_entry("info", "hello") == {"level": "info", "message": "hello"}
    entry = payloads.log_entry("warning", "rejected", topic="aqara/x/set", payload="ON",
                               reason="read-only")
    assert entry == {"level": "warning", "message": "rejected", "topic": "aqara/x/set",
                     "payload": "ON", "reason": "read-only"}


def test_log_entry_truncates_payload() -> None:
    entry = payloads.log_entry("error", "m", payload="x" * 1000)
    assert len(entry["payload"]) == payloads.MAX_LOGGED_PAYLOAD
    assert entry["payload"].endswith("…")
    assert payloads.log_entry("error", "m", payload="y" * 256)["payload"] == "y" * 256
    assert payloads.log_entry("error", "m", payload=b"\xffON")["payload"] == "\ufffdON"


def test_response() -> None:
    assert payloads.response("ok") == {"status": "ok", "data": None}
    assert payloads.response("ok", data=[1], transaction="t1") == {
        "status": "ok", "data": [1], "transaction": "t1"}
    assert payloads.response("error", error_code=404, error_message="no such device") == {
        "status": "error", "data": None, "error": {"code": 404, "message": "no such device"}}
    assert payloads.response("error")["error"] == {"code": None, "message": ""}
    assert payloads.response("ok", transaction=0)["transaction"] == 0


def test_event() -> None:
    assert payloads.event("device_added", device={"id": "x"}) == {
        "type": "device_added", "device": {"id": "x"}}
    assert payloads.event("device_removed") == {"type": "device_removed"}


def test_dumps_is_compact() -> None:
    assert payloads.dumps({"a": [1, "é"]}) == '{"a":[1,"é"]}'


json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False,
                                                                   allow_infinity=False)


@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["F", "G"]),
                          st.sampled_from(["T", "U"]),
                          st.sampled_from([ONOFF, LEVEL, TEMP, MODE, SECRET]),
                          st.none() | st.booleans() | st.integers(0, 100) | st.sampled_from(
                              ["0", "1", "7"])), max_size=12))
def test_device_state_shape(traits: list[tuple[int, str, str, TraitSpec, Any]]) -> None:
    device = Device("d", "d", "studio")
    for endpoint_id, function_code, trait_code, spec, value in traits:
        endpoint = device.endpoints.setdefault(endpoint_id, Endpoint(endpoint_id))
        function = endpoint.functions.setdefault(function_code, Function(function_code))
        function.traits[trait_code] = Trait(trait_code, spec, value)
    state = payloads.device_state(device)
    payloads.dumps(state)
    expected = {
        (str(a.endpoint_id), a.function_code, a.trait_code)
        for a, t in device.iter_traits() if t.spec.readable and t.value is not None
    }
    got = {(e, f, t) for e, fs in state.items() for f, ts in fs.items() for t in ts}
    assert got == expected
    info = payloads.device_info(device, "d", "d", TopicScheme("aqara"))
    payloads.dumps(info)
    assert sum(len(f["traits"]) for e in info["endpoints"] for f in e["functions"]) == len(
        device.iter_traits())
