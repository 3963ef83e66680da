"""Homie 5 convention payloads: description validity, value rendering, /set topic round trip."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from bridge.codec import decode_set
from bridge.model import Device, Endpoint, EnumOption, Function, Trait, TraitSpec, TraitType
from bridge.outputs.homie import (
    DISCONNECTED,
    EMPTY_STRING,
    HOMIE5,
    ID_PATTERN,
    INIT,
    LOST,
    READY,
    Convention,
    Versions,
    datatype,
    description,
    device_homie_id,
    homie_messages,
    homie_unit,
    homie_value,
    kebab,
    layout,
    parse_homie_set,
    resolve_set,
    set_payload_text,
    set_topic,
    value_format,
    value_message,
)
from tests.unit.test_discovery import home

DATATYPES = frozenset({"integer", "float", "boolean", "string", "enum", "color", "datetime",
                       "duration", "json"})
PROPERTY_KEYS = frozenset({"name", "datatype", "format", "settable", "retained", "unit"})
NODE_KEYS = frozenset({"name", "type", "properties"})
DEVICE_KEYS = frozenset({"homie", "version", "name", "nodes", "root", "parent", "children",
                         "extensions", "type"})
INTEGER = re.compile(r"-?\d+")
CLOCK = 1_700_000_000_000
FLOAT = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def messages_of(device: Device, parent: str | None = None,
                convention: Convention = HOMIE5) -> dict[str, str]:
    """Every retained message of ``device`` (its version from a fixed clock)."""
    document = Versions(lambda: CLOCK).stamp(device_homie_id(device.id),
                                              description(device, parent))
    return homie_messages(device, document, convention)


def check_format(prop: dict[str, Any]) -> None:
    """Homie 5's format rules for the property's datatype."""
    kind, fmt = prop["datatype"], prop.get("format")
    if kind in ("integer", "float"):
        if fmt is None:
            return
        parts = fmt.split(":")
        assert len(parts) in (2, 3), fmt
        number = INTEGER if kind == "integer" else FLOAT
        for part in parts:
            assert part == "" or number.fullmatch(part), fmt
        if parts[0] and parts[1]:
            assert float(parts[0]) <= float(parts[1]), fmt
        if len(parts) == 3:
            assert parts[2], fmt
            assert float(parts[2]) > 0, fmt
    elif kind == "enum":
        assert fmt, prop
        labels = fmt.split(",")
        assert len(labels) == len(set(labels))
        assert all(label and label == label.strip() for label in labels)
    elif kind == "boolean" and fmt is not None:
        assert len(fmt.split(",")) == 2


def check_value(prop: dict[str, Any], payload: str) -> None:
    """Homie 5's payload rules for the property's datatype."""
    kind = prop["datatype"]
    assert payload != ""  # an empty payload would delete the retained topic
    if kind == "boolean":
        assert payload in ("true", "false")
    elif kind == "integer":
        assert INTEGER.fullmatch(payload)
    elif kind == "float":
        assert FLOAT.fullmatch(payload)
    elif kind == "enum":
        assert payload in prop["format"].split(",")
    elif kind == "json":
        json.loads(payload)
    if kind in ("integer", "float") and prop.get("format"):
        low, high = prop["format"].split(":")[:2]
        if low:
            assert float(payload) >= float(low)
        if high:
            assert float(payload) <= float(high)


def test_descriptions_of_the_whole_home_are_valid() -> None:
    device_ids: set[str] = set()
    for device in home():
        messages = messages_of(device)
        homie_id = device_homie_id(device.id)
        assert ID_PATTERN.fullmatch(homie_id)
        device_ids.add(homie_id)
        topic = f"homie/5/{homie_id}/$description"
        document = json.loads(messages[topic])
        assert set(document) <= DEVICE_KEYS
        assert document["homie"] == "5.0"
        assert document["version"] == CLOCK
        assert document["name"] == device.name
        assert document["nodes"]
        for node_id, node in document["nodes"].items():
            assert ID_PATTERN.fullmatch(node_id), node_id
            assert set(node) <= NODE_KEYS
            assert isinstance(node["name"], str)
            assert node["name"]
            for prop_id, prop in node["properties"].items():
                assert ID_PATTERN.fullmatch(prop_id), prop_id
                assert set(prop) <= PROPERTY_KEYS
                assert prop["datatype"] in DATATYPES
                assert isinstance(prop["settable"], bool)
                assert isinstance(prop["retained"], bool)
                check_format(prop)
                value_topic = f"homie/5/{homie_id}/{node_id}/{prop_id}"
                if value_topic in messages:
                    assert prop["retained"]
                    check_value(prop, messages[value_topic])
        for topic in messages:
            assert not set(topic) & {"+", "#", "\x00"}
            assert topic.startswith(f"homie/5/{homie_id}/")
    assert len(device_ids) == len(home())


def test_every_readable_trait_with_a_value_is_published() -> None:
    for device in home():
        messages = messages_of(device)
        ids = layout(device)
        for address, trait in device.iter_traits():
            node, prop = ids.properties[address]
            topic = f"homie/5/{ids.device_id}/{node}/{prop}"
            assert (topic in messages) == (trait.spec.readable and trait.value is not None)
            found = value_message(device, address)
            assert found == ((topic, messages[topic]) if topic in messages else None)


def test_ids() -> None:
    assert device_homie_id("lumi1.54ef448a0b73") == "lumi1-54ef448a0b73"
    assert device_homie_id("aqara.lock.7f3e9a01c2") == "aqara-lock-7f3e9a01c2"
    odd = [device_homie_id(x) for x in ("a-b", "A.B", "a_b", "a..b", ".a", "", "é", "a.b")]
    assert all(ID_PATTERN.fullmatch(i) for i in odd)
    assert len(set(odd)) == len(odd)
    assert "--" in device_homie_id("a-b")
    assert kebab("OnOff") == "on-off"
    assert kebab("PM2.5Density") == "pm2-5-density"
    assert kebab("CO2Density") == "co2-density"
    assert kebab("HeaterCoolerMode") == "heater-cooler-mode"
    assert kebab("---") == "x"
    ids = layout(home()[0])
    assert ids.nodes[(2, "Output")] == "ep2-output"
    assert ids.nodes[(0, "BasicInformation")] == "ep0-basic-information"


def test_colliding_property_ids_get_distinct_suffixes() -> None:
    spec = TraitSpec(TraitType.NUMBER, "Float")
    device = Device("lumi.0000000001", "Odd", "studio", endpoints={1: Endpoint(1, (), {
        "Energy": Function("Energy", {"OnOff": Trait("OnOff", spec, 1),
                                      "On_Off": Trait("On_Off", spec, 2)}),
        "energy": Function("energy", {"X": Trait("X", spec, 3)}),
    })})
    ids = layout(device)
    assert len(set(ids.properties.values())) == 3
    assert len(set(ids.nodes.values())) == 2
    for node, prop in ids.properties.values():
        assert ID_PATTERN.fullmatch(node)
        assert ID_PATTERN.fullmatch(prop)
    for address in ids.properties:
        parsed = parse_homie_set(set_topic(device, address))
        assert parsed is not None
        assert resolve_set(device, parsed[1], parsed[2]) == address


def test_set_topics_round_trip() -> None:
    assert HOMIE5.set_subscription() == "homie/5/+/+/+/set"
    assert Convention(4).set_subscription() == "homie/+/+/+/set"
    for device in home():
        for address, trait in device.iter_traits():
            topic = set_topic(device, address)
            parsed = parse_homie_set(topic)
            assert parsed is not None
            assert parsed[0] == device_homie_id(device.id)
            assert resolve_set(device, parsed[1], parsed[2]) == address
            if trait.spec.writable and trait.spec.readable and trait.value is not None:
                payload = homie_value(trait.spec, trait.value)
                assert payload is not None
                assert decode_set(trait.spec, set_payload_text(payload)) == trait.value


@pytest.mark.parametrize("topic", [
    "homie/5/dev/node/prop", "homie/5/dev/node/prop/get", "homie/4/dev/node/prop/set",
    "other/5/dev/node/prop/set", "homie/5/Dev/node/prop/set", "homie/5/dev/-node/prop/set",
    "homie/5/dev/node/$prop/set", "homie/5/dev/node/prop/set/x", "homie/5//node/prop/set",
])
def test_parse_rejects(topic: str) -> None:
    assert parse_homie_set(topic) is None


def test_parse_with_another_root_and_homie_4() -> None:
    assert parse_homie_set("home/homie/5/d/n/p/set", Convention(5, "home/homie")) == (
        "d", "n", "p")
    assert parse_homie_set("homie/d/n/p/set", Convention(4)) == ("d", "n", "p")
    assert parse_homie_set("homie/5/d/n/p/set", Convention(4)) is None
    assert resolve_set(home()[0], "ep9-nothing", "x") is None


def _device(spec: TraitSpec, value: Any) -> Device:
    return Device("lumi.0000000002", "One", "studio", endpoints={1: Endpoint(1, (), {
        "Fn": Function("Fn", {"Tr": Trait("Tr", spec, value)})})})


def _property(spec: TraitSpec, value: Any = None) -> tuple[dict[str, Any], str | None]:
    device = _device(spec, value)
    messages = messages_of(device)
    document = json.loads(messages["homie/5/lumi-0000000002/$description"])
    return document["nodes"]["ep1-fn"]["properties"]["tr"], messages.get(
        "homie/5/lumi-0000000002/ep1-fn/tr")


E = TraitType.ENUM
N = TraitType.NUMBER


@pytest.mark.parametrize(("spec", "value", "expected", "payload"), [
    (TraitSpec(TraitType.BOOLEAN, writable=True), True,
     {"datatype": "boolean", "settable": True, "retained": True}, "true"),
    (TraitSpec(TraitType.BOOLEAN, enums=(EnumOption("Offline", "0"), EnumOption("Online", "1"))),
     False, {"datatype": "boolean", "format": "Offline,Online"}, "false"),
    (TraitSpec(N, "Uint8", "%", 0, 100, 1, writable=True), 42,
     {"datatype": "integer", "format": "0:100:1", "unit": "%"}, "42"),
    (TraitSpec(N, "Float", "°C", 5, 30, 0.5), 21.5,
     {"datatype": "float", "format": "5:30:0.5", "unit": "°C"}, "21.5"),
    (TraitSpec(N, "Float", None, None, 10), 1e-7, {"datatype": "float", "format": ":10"},
     "0.0000001"),
    (TraitSpec(N, "Int32", None, 0.5, 9.5, 0.5), 3, {"datatype": "integer", "format": "1:9"},
     "3"),
    (TraitSpec(N, "Float"), 2.0, {"datatype": "float"}, "2"),
    (TraitSpec(E, enums=(EnumOption("Auto", "0"), EnumOption("Cool", "1")), writable=True), "1",
     {"datatype": "enum", "format": "Auto,Cool", "settable": True}, "Cool"),
    (TraitSpec(E, enums=(EnumOption("A,B", "0"), EnumOption("C", "1"))), "0",
     {"datatype": "string"}, "A,B"),
    (TraitSpec(E), "7", {"datatype": "string"}, "7"),
    (TraitSpec(TraitType.STRING), "", {"datatype": "string"}, EMPTY_STRING),
    (TraitSpec(TraitType.STRING), "1.0.5", {"datatype": "string"}, "1.0.5"),
    (TraitSpec(TraitType.OTHER), {"b": [1, 2], "a": "é"}, {"datatype": "json"},
     '{"b":[1,2],"a":"é"}'),
    (TraitSpec(TraitType.STRING, readable=False, writable=True), "secret",
     {"datatype": "string", "settable": True, "retained": False}, None),
])
def test_property_description_and_value(spec: TraitSpec, value: Any, expected: dict[str, Any],
                                        payload: str | None) -> None:
    prop, published = _property(spec, value)
    for key, wanted in expected.items():
        assert prop[key] == wanted, key
    assert published == payload
    check_format(prop)
    if published is not None:
        check_value(prop, published)
    assert datatype(spec) == prop["datatype"]
    assert value_format(spec) == prop.get("format")


def test_version_tracks_the_description() -> None:
    device = home()[0]
    versions = Versions(lambda: CLOCK)
    first = versions.stamp("d", description(device))
    assert versions.stamp("d", description(device)) == first
    assert messages_of(device) == messages_of(home()[0])
    device.endpoints[2].functions["Output"].traits["OnOff"].value = True
    assert versions.stamp("d", description(device))["version"] == first["version"]  # values
    device.name = "Renamed"
    assert versions.stamp("d", description(device))["version"] > first["version"]


def test_versions_only_grow_across_renames_restarts_and_a_clock_set_back() -> None:
    device = home()[0]
    now = [CLOCK]
    versions = Versions(lambda: now[0])
    seen = []
    for name in ("B", "A", "C", "B"):  # a hash of the text went up, down, down here
        device.name = name
        seen.append(versions.stamp("d", description(device))["version"])
        now[0] -= 1000  # the clock goes back between every change
    assert seen == sorted(seen)
    assert len(set(seen)) == len(seen)
    assert versions.dirty
    record = versions.dump()
    assert not versions.dirty
    restarted = Versions(lambda: CLOCK - 10**9, Versions.load(record))
    assert restarted.stamp("d", description(device))["version"] == seen[-1]  # same document
    assert not restarted.dirty
    device.name = "D"
    assert restarted.stamp("d", description(device))["version"] == seen[-1] + 1
    assert Versions(lambda: CLOCK).stamp("d", description(device))["version"] == CLOCK
    for bad in ("[]", '{"d": [1]}', '{"d": ["1", "x"]}'):
        with pytest.raises(ValueError, match=r"JSON object|bad entry"):
            Versions.load(bad)


def test_units_are_the_conventions_spellings() -> None:
    assert [homie_unit(u) for u in ("℃", "lux", "kwh", "mired", "W", "%", "Pa", "ms", " ")] == [
        "°C", "lx", "kWh", "MK⁻¹", "W", "%", "Pa", "ms", None]
    prop, _ = _property(TraitSpec(N, "Float", "℃", -20, 60), 20.5)
    assert prop["unit"] == "°C"


def test_child_of_a_bridge_device() -> None:
    document = description(home()[0], parent="aqara-mqtt")
    assert document["root"] == document["parent"] == "aqara-mqtt"
    assert "root" not in description(home()[0])


def test_lifecycle_helpers() -> None:
    assert HOMIE5.state_topic("lumi1-54ef448a0b73") == "homie/5/lumi1-54ef448a0b73/$state"
    assert Convention(5, "h").state_topic("x") == "h/5/x/$state"
    assert Convention(4, "h").state_topic("x") == "h/x/$state"
    assert {INIT, READY, LOST, DISCONNECTED} == {"init", "ready", "lost", "disconnected"}
    assert not any(topic.endswith("$state") for topic in messages_of(home()[0]))
    assert set_payload_text(EMPTY_STRING) == '""'
    assert set_payload_text(b"\x00") == '""'
    assert set_payload_text("on") == "on"
    assert decode_set(TraitSpec(TraitType.STRING, writable=True), set_payload_text("\x00")) == ""
