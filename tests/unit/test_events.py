"""Momentary events without sockets: the repeat filter, the core's event path through the topic
tree, Home Assistant and Homie outputs, and how each backend's wire maps to events."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import jinja2
import pytest

from bridge.backends.aqara_cloud.client import event_addresses
from bridge.backends.aqara_events import decode, device_event
from bridge.backends.aqara_spec import parse_device
from bridge.backends.tuya.events import event_type
from bridge.backends.tuya.model import build_device, parse_spec
from bridge.events import RepeatFilter, event_document
from bridge.messages import JSON_PROPERTIES
from bridge.model import DeviceEvent, EventSource, TraitAddress
from bridge.outputs.discovery import (
    DiscoveryOptions,
    device_object_id,
    discovery_changes,
    discovery_messages,
)
from bridge.outputs.homie import description, event_topic
from bridge.outputs.homie_output import HomieOutput
from bridge.simulators.aqara_wire import endpoints_tree
from bridge.simulators.event_devices import event_devices
from bridge.simulators.sample_home import SimDevice, sample_home
from bridge.topics import TopicScheme
from tests.unit.test_core import FakePublisher, light, make_rig
from tests.unit.test_discovery import COMMON_KEYS, render

REMOTE = "lumi.158d0009e1a002"


def hub_device(sim: SimDevice) -> Any:
    """A simulator device as the Aqara backends parse it (the Studio GetDevicesRequest shape)."""
    return parse_device({"deviceId": sim.device_id, "name": sim.name, "model": sim.model,
                         "deviceTypesList": sim.types,
                         "endpoints": endpoints_tree(sim, lambda t: t.value)}, "home")


def remote() -> Any:
    return hub_device(next(d for d in event_devices() if d.device_id == REMOTE))


# ---- the repeat filter --------------------------------------------------------------------------


def test_repeat_filter_knows_an_event_by_its_hub_id_or_time_and_forgets_the_oldest() -> None:
    repeats = RepeatFilter(capacity=2)
    first = DeviceEvent("d", 1, "1", "single", time=1000)
    assert not repeats.repeated(first)
    assert repeats.repeated(DeviceEvent("d", 1, "1", "single", time=1000))
    assert not repeats.repeated(DeviceEvent("d", 1, "1", "single", time=1001))  # a new press
    assert not repeats.repeated(DeviceEvent("d", 1, "1", "double", time=1000))
    assert len(repeats) == 2  # bounded: the first one is forgotten
    assert not repeats.repeated(first)
    untold = DeviceEvent("d", 1, "1", "single")
    assert not repeats.repeated(untold)
    assert not repeats.repeated(untold)
    assert not repeats.repeated(DeviceEvent("d", 1, "1", "single", event_id="a"))
    assert repeats.repeated(DeviceEvent("d", 1, "1", "single", event_id="a"))


# ---- Aqara's trait model ------------------------------------------------------------------------


def test_aqara_event_traits_become_event_sources_never_traits() -> None:
    device = remote()
    assert [(s.endpoint_id, s.button, s.event_types) for s in device.events] == [
        (1, "1", ("single", "double", "triple", "hold", "release")),
        (2, "2", ("single", "double", "triple", "hold", "release")),
    ]
    assert "2.Switch.MultiPressComplete" in device.events[1].hub_codes
    assert not [a for a, _ in device.iter_traits() if a.function_code == "Switch"]
    assert device.trait(0, "PowerSource", "BatPercentRemaining") is not None
    assert TraitAddress(REMOTE, 2, "Switch", "LongPress") in event_addresses(device)
    cube = hub_device(next(d for d in event_devices() if d.model == "lumi.remote.cagl02"))
    assert cube.events[0].event_types[:3] == ("shake", "flip90", "flip180")
    bedside = hub_device(next(d for d in sample_home() if d.name == "Bedside Button"))
    assert bedside.events == (EventSource(1, "1", ("single", "double", "hold", "release"),
                                          bedside.events[0].hub_codes),)


@pytest.mark.parametrize(("trait", "value", "expected"), [
    ("MultiPressComplete", 2, "double"), ("MultiPressComplete", "3", "triple"),
    ("MultiPressComplete", 0, None), ("MultiPressComplete", True, None),
    ("MultiPressComplete", "x", None), ("LongPress", True, "hold"),
    ("LongRelease", "1", "release"), ("InitialPress", True, None), ("ShortRelease", True, None),
])
def test_aqara_switch_pushes_decode_to_one_event_per_press(trait: str, value: Any,
                                                           expected: str | None) -> None:
    assert decode("Switch", trait, value) == expected


def test_aqara_gesture_push_is_an_event_with_the_hub_time() -> None:
    event = device_event(TraitAddress("c", 1, "Cube", "Gesture"), "rotate_left", 99)
    assert event == DeviceEvent("c", 1, "1", "rotate_left", 99, None)
    assert device_event(TraitAddress("c", 1, "Cube", "Gesture"), "", 99) is None


# ---- Tuya's data points -------------------------------------------------------------------------


def test_tuya_event_dps_are_event_sources_and_their_values_events() -> None:
    spec = parse_spec({"category": "wxkg", "status": [
        {"code": "switch2_value", "type": "Enum",
         "values": json.dumps({"range": ["single_click", "double_click", "long_press"]})},
        {"code": "switch1_value", "type": "Enum",
         "values": json.dumps({"range": ["single_click", "double_click", "long_press"]})},
        {"code": "battery_percentage", "type": "Integer", "values": "{}"}]})
    device, bad = build_device({"id": "t1", "name": "Remote"}, spec, "tuya",
                               {"switch1_value": "double_click", "battery_percentage": 80})
    assert bad == []
    assert [(s.button, s.event_types, s.hub_codes) for s in device.events] == [
        ("1", ("single", "double", "hold"), ("switch1_value",)),
        ("2", ("single", "double", "hold"), ("switch2_value",))]
    assert [a.trait_code for a, _ in device.iter_traits()] == ["battery_percentage"]
    assert [event_type(v) for v in ("single_click", "long_press", "normal", "Rotate Left", 3)] \
        == ["single", "hold", None, "rotate_left", None]


# ---- the core and its outputs -------------------------------------------------------------------


def remote_rig() -> Any:
    rig = make_rig()
    rig.snapshot(remote(), light())
    rig.mqtt.clear()
    return rig


async def test_a_press_is_published_once_per_device_and_on_the_stream_never_retained() -> None:
    rig = remote_rig()
    rig.event(DeviceEvent(REMOTE, 2, "2", "double", 1_700_000_000_000))
    rig.event(DeviceEvent(REMOTE, 2, "2", "double", 1_700_000_000_000))  # delivered again
    per_device = rig.mqtt.on(f"aqara/{REMOTE}/event")
    stream = rig.mqtt.on("aqara/bridge/events")
    assert len(per_device) == len(stream) == 1
    assert per_device[0].json() == stream[0].json() == {
        "event_type": "double", "action": "button_2_double", "button": "2", "endpoint": 2,
        "device": REMOTE, "device_id": REMOTE, "time": 1_700_000_000_000}
    assert not per_device[0].retain
    assert not stream[0].retain
    assert per_device[0].properties == stream[0].properties == JSON_PROPERTIES
    assert not rig.mqtt.under(f"aqara/{REMOTE}/event")
    assert "aqara/bridge/events" not in \
        rig.mqtt.retained
    assert (rig.bridge.events_fired, rig.bridge.events_repeated) == (1, 1)
    rig.event(DeviceEvent(REMOTE, 2, "2", "double", 1_700_000_000_900))  # the next press
    assert len(rig.mqtt.on("aqara/bridge/events")) == 2


async def test_undeclared_events_and_foreign_devices_fire_nothing() -> None:
    rig = remote_rig()
    rig.event(DeviceEvent(REMOTE, 2, "2", "shake", 1))  # a button does not shake
    rig.event(DeviceEvent(REMOTE, 3, "3", "single", 1))  # no third button
    rig.event(DeviceEvent("lumi.unknown", 1, "1", "single", 1))
    assert not rig.mqtt.on("aqara/bridge/events")
    assert not [s for s in rig.mqtt.sent if s.topic.endswith("/event")]


async def test_the_device_listing_names_the_events_a_device_fires() -> None:
    rig = remote_rig()
    listing = rig.bridge.describe(rig.bridge.devices[REMOTE])
    assert listing["events"] == {"topic": f"aqara/{REMOTE}/event", "sources": [
        {"button": b, "endpoint": int(b),
         "event_types": ["single", "double", "triple", "hold", "release"],
         "actions": [f"button_{b}_{k}" for k in ("single", "double", "triple", "hold",
                                                  "release")]} for b in ("1", "2")]}
    assert "events" not in rig.bridge.describe(rig.bridge.devices[light().id])


# ---- Home Assistant -----------------------------------------------------------------------------

TRIGGER_KEYS = frozenset({"p", "atype", "t", "type", "stype", "pl", "val_tpl", "qos", "dev", "o",
                          "avty", "avty_mode"})
"""TRIGGER_DISCOVERY_SCHEMA (abbreviated): automation_type, topic, type, subtype, payload,
value_template, qos and the device; the rest of a shared block is removed, not refused."""
EVENT_KEYS = frozenset({"stat_t", "val_tpl", "evt_typ", "dev_cla"})
EVENT_CLASSES = frozenset({"doorbell", "button", "motion"})


def ha_event_entity(config: dict[str, Any], payload: str) -> tuple[str, dict[str, Any]] | None:
    """What Home Assistant's MQTT event entity does with a message (mqtt/event.py): render the
    value template, ignore an empty result, else take ``event_type`` out of the JSON (which
    must be one of the entity's ``event_types``) and keep the rest as attributes."""
    rendered = render(config["val_tpl"], value=payload,
                      value_json=SimpleNamespace(**json.loads(payload)))
    if not rendered:
        return None
    attributes = json.loads(rendered)
    kind = attributes.pop("event_type")
    assert kind in config["evt_typ"]
    return kind, attributes


def ha_trigger_fires(config: dict[str, Any], topic: str, payload: str) -> bool:
    """Home Assistant's MQTT trigger: same topic, and the rendered value equals the payload."""
    value = render(config["val_tpl"], value=payload,
                   value_json=SimpleNamespace(**json.loads(payload)))
    return bool(topic == config["t"] and value == config["pl"])


@pytest.mark.parametrize("device_based", [True, False])
def test_home_assistant_gets_an_event_entity_per_button_and_a_trigger_per_press(
        device_based: bool) -> None:
    options = DiscoveryOptions(origin_version="1", device_based=device_based)
    device = remote()
    messages = discovery_messages(device, "Hall Remote", TopicScheme("aqara"), options)
    object_id = device_object_id(REMOTE, options)
    if device_based:
        cmps = json.loads(messages[f"homeassistant/device/{object_id}/config"])["cmps"]
    else:
        cmps = {}
        for topic, payload in messages.items():
            platform, _object_id, key = topic.split("/")[1:4]
            cmps[key] = {"p": platform, **json.loads(payload)}
            if platform == "device_automation":
                assert topic == f"homeassistant/device_automation/{object_id}/{key}/config"
    events = {k: c for k, c in cmps.items() if c["p"] == "event"}
    triggers = {k: c for k, c in cmps.items() if c["p"] == "device_automation"}
    assert sorted(events) == ["event_1", "event_2"]
    assert len(triggers) == 10
    for config in events.values():
        assert set(config) - COMMON_KEYS - EVENT_KEYS == set()
        assert config["stat_t"] == "aqara/Hall Remote/event"
        assert config["dev_cla"] in EVENT_CLASSES
        assert config["uniq_id"]
        assert config["evt_typ"]
        assert all(isinstance(kind, str) and kind for kind in config["evt_typ"])
    for config in triggers.values():
        assert set(config) <= TRIGGER_KEYS
        assert {"atype", "t", "type", "stype"} <= set(config)  # required by the schema
        assert config["atype"] == "trigger"
        assert config["t"] == "aqara/Hall Remote/event"
    pairs = [(c["type"], c["stype"]) for c in triggers.values()]
    assert len(set(pairs)) == len(pairs)  # type + subtype unique per device
    assert ("button_double_press", "button_2") in pairs

    # what a double press of button 2 does in Home Assistant
    source = device.events[1]
    press = event_document(device, "Hall Remote", source,
                           DeviceEvent(REMOTE, 2, "2", "double", 1_700_000_000_000))
    topic = "aqara/Hall Remote/event"
    fired = [c for c in triggers.values() if ha_trigger_fires(c, topic, press)]
    assert [(c["type"], c["stype"]) for c in fired] == [("button_double_press", "button_2")]
    assert ha_event_entity(events["event_1"], press) is None
    kind, attributes = ha_event_entity(events["event_2"], press) or ("", {})
    assert kind == "double"
    assert attributes["button"] == "2"


def test_real_jinja_renders_the_event_and_trigger_templates_as_assumed() -> None:
    """Home Assistant renders ``val_tpl`` with Jinja, ``value_json`` being the parsed payload:
    real Jinja must agree with the small renderer the Home Assistant checks above use."""
    env = jinja2.Environment()
    device = remote()
    options = DiscoveryOptions(origin_version="1", device_based=False)
    messages = discovery_messages(device, "Hall Remote", TopicScheme("aqara"), options)
    templates = {json.loads(payload)["val_tpl"] for topic, payload in messages.items()
                 if topic.split("/")[1] in ("event", "device_automation")}
    assert len(templates) == 3  # one per button's event entity, one for every trigger
    for source in device.events:
        for kind in source.event_types:
            press = event_document(device, "Hall Remote", source,
                                   DeviceEvent(REMOTE, source.endpoint_id, source.button, kind,
                                               1_700_000_000_000))
            for template in templates:
                ours = render(template, value=press,
                              value_json=SimpleNamespace(**json.loads(press)))
                assert env.from_string(template).render(
                    value=press, value_json=json.loads(press)) == ours


def test_a_device_that_loses_its_buttons_loses_their_components() -> None:
    options = DiscoveryOptions(origin_version="1")
    device = remote()
    before = discovery_messages(device, "r", None, options)
    device.events = ()
    after = discovery_messages(device, "r", None, options)
    cmps = json.loads(next(iter(discovery_changes(before, after).values())))["cmps"]
    assert cmps["event_2"] == {"p": "event"}
    assert cmps["action_2_double"] == {"p": "device_automation"}


# ---- Homie --------------------------------------------------------------------------------------


async def test_homie_announces_a_non_retained_event_property_and_sends_the_event_type() -> None:
    device = remote()
    node = description(device)["nodes"]["events"]
    assert node["properties"]["button-2"] == {
        "name": "Button 2", "datatype": "enum", "format": "single,double,triple,hold,release",
        "settable": False, "retained": False}
    rig = make_rig()
    homie = HomieOutput("homie", rig.bridge.entries)
    rig.bridge.add_output(homie)
    rig.snapshot(device)
    mqtt: FakePublisher = rig.mqtt
    mqtt.clear()
    rig.event(DeviceEvent(REMOTE, 2, "2", "hold", 5))
    sent = mqtt.on(event_topic(device, device.events[1]))
    assert [(s.payload, s.retain) for s in sent] == [("hold", False)]
