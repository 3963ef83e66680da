"""Home Assistant MQTT discovery payloads, validated against Home Assistant's documented rules."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import jinja2
import pytest

from bridge.codec import WriteRejected, decode_device_set, decode_set, to_payload
from bridge.model import (
    Device,
    Endpoint,
    EnumOption,
    Function,
    Trait,
    TraitAddress,
    TraitSpec,
    TraitType,
)
from bridge.outputs.discovery import (
    DEVICE_CLASS_UNITS,
    DiscoveryOptions,
    binary_class,
    component_count,
    components,
    device_object_id,
    discovery_changes,
    discovery_messages,
    discovery_topics_for,
    dumps,
    ends_with_words,
    humanize,
    numeric_device_class,
    safe_id,
    snake,
)
from bridge.simulators.sample_home import SimDevice, sample_home
from bridge.topics import TopicScheme, TraitSet

SCHEME = TopicScheme("aqara")
OPTIONS = DiscoveryOptions(origin_version="1.2.3")


# ---- helpers ------------------------------------------------------------------------------------


def to_device(sim: SimDevice) -> Device:
    """A simulator device as the bridge's model (SimTrait fields map 1:1 to TraitSpec/Trait)."""
    endpoints: dict[int, Endpoint] = {}
    for sim_endpoint in sim.endpoints:
        functions: dict[str, Function] = {}
        for sim_function in sim_endpoint.functions:
            traits: dict[str, Trait] = {}
            for t in sim_function.traits:
                spec = TraitSpec(
                    type=TraitType(t.type), format=t.format, unit=t.unit, min=t.min, max=t.max,
                    step=t.step, enums=tuple(EnumOption(k, v) for k, v in (t.enums or [])),
                    readable=t.readable, writable=t.writable, subscribable=t.subscribable,
                    default=t.default,
                )
                traits[t.code] = Trait(t.code, spec, t.value, t.time)
            functions[sim_function.code] = Function(sim_function.code, traits)
        endpoints[sim_endpoint.endpoint_id] = Endpoint(
            sim_endpoint.endpoint_id, tuple(sim_endpoint.types), functions)
    return Device(sim.device_id, sim.name, "studio", sim.model, tuple(sim.types), sim.online,
                  endpoints)


def home() -> list[Device]:
    return [to_device(sim) for sim in sample_home()]


def messages_for(device: Device, options: DiscoveryOptions = OPTIONS) -> dict[str, str]:
    return discovery_messages(device, device.id, SCHEME, options)


def cmps_of(device: Device, options: DiscoveryOptions = OPTIONS) -> dict[str, dict[str, Any]]:
    messages = messages_for(device, options)
    assert len(messages) == 1
    document: dict[str, Any] = json.loads(next(iter(messages.values())))
    result: dict[str, dict[str, Any]] = document["cmps"]
    return result


def one_trait_device(function: str, code: str, spec: TraitSpec, value: Any = None,
                     endpoint_id: int = 1, types: tuple[str, ...] = (),
                     name: str = "Test device") -> Device:
    return Device("lumi.0000000001", name, "studio", "lumi.test", (), True, {
        endpoint_id: Endpoint(endpoint_id, types, {
            function: Function(function, {code: Trait(code, spec, value)})}),
    })


def only_component(device: Device) -> dict[str, Any]:
    cmps = cmps_of(device)
    assert len(cmps) == 1, cmps
    return next(iter(cmps.values()))


def _ha_round(value: Any, precision: int = 0, method: str = "common") -> int | float:
    """Home Assistant's ``round`` filter (``forgiving_round`` in its template helpers, 2026.2):
    Python's rounding (ties to even), and an int at precision 0 where Jinja's gives a float."""
    assert method == "common"
    rounded = round(float(value), precision)
    return int(rounded) if precision == 0 else rounded


HA_JINJA = jinja2.Environment()
HA_JINJA.filters["round"] = _ha_round
PLAIN_JINJA = jinja2.Environment()


def render(template: str, **variables: Any) -> str:
    """The template rendered as Home Assistant does (Jinja with its ``round``), checked to give
    the same under plain Jinja, so the payloads do not hang on that difference."""
    text = HA_JINJA.from_string(template).render(**variables)
    assert PLAIN_JINJA.from_string(template).render(**variables) == text, template
    return text


# ---- Home Assistant's rules, as data ------------------------------------------------------------

COMMON_KEYS = frozenset({
    "p", "uniq_id", "name", "ent_cat", "en", "ic", "ent_pic", "json_attr_t", "json_attr_tpl",
    "qos", "avty", "avty_mode", "avty_t", "avty_tpl", "pl_avail", "pl_not_avail", "dev", "o",
    "e", "obj_id", "def_ent_id",
})
"""Options every MQTT entity accepts (MQTT_ENTITY_COMMON_SCHEMA, abbreviated)."""

PLATFORM_KEYS: dict[str, frozenset[str]] = {
    "sensor": frozenset({"stat_t", "val_tpl", "dev_cla", "stat_cla", "unit_of_meas", "exp_aft",
                         "frc_upd", "lrst_val_tpl", "ops", "sug_dsp_prc"}),
    "binary_sensor": frozenset({"stat_t", "val_tpl", "dev_cla", "pl_on", "pl_off", "off_dly",
                                "exp_aft", "frc_upd"}),
    "switch": frozenset({"cmd_t", "cmd_tpl", "stat_t", "val_tpl", "pl_on", "pl_off", "stat_on",
                         "stat_off", "opt", "ret", "dev_cla"}),
    "button": frozenset({"cmd_t", "cmd_tpl", "pl_prs", "dev_cla", "ret"}),
    "number": frozenset({"cmd_t", "cmd_tpl", "stat_t", "val_tpl", "min", "max", "step", "mode",
                         "unit_of_meas", "dev_cla", "opt", "ret", "pl_rst"}),
    "select": frozenset({"cmd_t", "cmd_tpl", "stat_t", "val_tpl", "ops", "opt", "ret"}),
    "text": frozenset({"cmd_t", "cmd_tpl", "stat_t", "val_tpl", "min", "max", "mode", "ptrn",
                       "ret"}),
    "light": frozenset({
        "cmd_t", "stat_t", "stat_val_tpl", "pl_on", "pl_off", "on_cmd_type", "opt", "ret",
        "bri_cmd_t", "bri_cmd_tpl", "bri_scl", "bri_stat_t", "bri_val_tpl",
        "clr_temp_cmd_t", "clr_temp_cmd_tpl", "clr_temp_stat_t", "clr_temp_val_tpl",
        "clr_temp_k", "min_mirs", "max_mirs", "min_k", "max_k",
        "hs_cmd_t", "hs_cmd_tpl", "hs_stat_t", "hs_val_tpl", "clrm_stat_t", "clrm_val_tpl",
        "fx_cmd_t", "fx_list", "fx_stat_t", "fx_val_tpl",
    }),
    "cover": frozenset({
        "cmd_t", "stat_t", "val_tpl", "pos_t", "pos_tpl", "set_pos_t", "set_pos_tpl",
        "pos_open", "pos_clsd", "pl_open", "pl_cls", "pl_stop", "stat_open", "stat_clsd",
        "stat_opening", "stat_closing", "stat_stopped", "dev_cla", "opt", "ret",
        "tilt_cmd_t", "tilt_status_t", "tilt_min", "tilt_max",
    }),
    "climate": frozenset({
        "temp_cmd_t", "temp_cmd_tpl", "temp_stat_t", "temp_stat_tpl", "curr_temp_t",
        "curr_temp_tpl", "min_temp", "max_temp", "temp_step", "precision", "temp_unit",
        "modes", "mode_cmd_t", "mode_cmd_tpl", "mode_stat_t", "mode_stat_tpl",
        "fan_modes", "fan_mode_cmd_t", "fan_mode_cmd_tpl", "fan_mode_stat_t",
        "fan_mode_stat_tpl", "act_t", "act_tpl", "opt", "ret", "pow_cmd_t",
    }),
    "lock": frozenset({"cmd_t", "cmd_tpl", "stat_t", "val_tpl", "pl_lock", "pl_unlk", "pl_open",
                       "stat_locked", "stat_unlocked", "stat_locking", "stat_unlocking",
                       "stat_jam", "stat_open", "stat_opening", "opt", "ret"}),
}
"""Keys Home Assistant documents per platform (abbreviated form)."""

REQUIRED: dict[str, frozenset[str]] = {
    "sensor": frozenset({"stat_t"}), "binary_sensor": frozenset({"stat_t"}),
    "switch": frozenset({"cmd_t"}), "button": frozenset({"cmd_t"}),
    "number": frozenset({"cmd_t"}), "select": frozenset({"cmd_t", "ops"}),
    "text": frozenset({"cmd_t"}), "light": frozenset({"cmd_t"}), "lock": frozenset({"cmd_t"}),
    "cover": frozenset(), "climate": frozenset(),
}

TEMPLATE_NEEDS_TOPIC = {
    "val_tpl": "stat_t", "cmd_tpl": "cmd_t", "mode_cmd_tpl": "mode_cmd_t",
    "mode_stat_tpl": "mode_stat_t", "hs_cmd_tpl": "hs_cmd_t", "hs_val_tpl": "hs_stat_t",
    "bri_val_tpl": "bri_stat_t", "set_pos_tpl": "set_pos_t", "pos_tpl": "pos_t",
}

HVAC_MODES = frozenset({"auto", "off", "cool", "heat", "dry", "fan_only", "heat_cool"})
BINARY_SENSOR_CLASSES = frozenset({
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door",
    "garage_door", "gas", "heat", "light", "lock", "moisture", "motion", "moving", "occupancy",
    "opening", "plug", "power", "presence", "problem", "running", "safety", "smoke", "sound",
    "tamper", "update", "vibration", "window",
})
COVER_CLASSES = frozenset({"awning", "blind", "curtain", "damper", "door", "garage", "gate",
                           "shade", "shutter", "window"})
SENSOR_CLASSES = frozenset(DEVICE_CLASS_UNITS) | {"enum"}
ENTITY_CATEGORIES = frozenset({"config", "diagnostic"})
ENERGY_STATE_CLASSES = frozenset({"total", "total_increasing"})
OBJECT_ID = re.compile(r"[A-Za-z0-9_-]+")


def component_errors(platform: str, config: dict[str, Any]) -> list[str]:
    """Every rule of Home Assistant's schema for ``platform`` that ``config`` breaks."""
    errors: list[str] = []
    if platform not in PLATFORM_KEYS:
        return [f"unknown platform {platform}"]
    unknown = set(config) - COMMON_KEYS - PLATFORM_KEYS[platform]
    if unknown:
        errors.append(f"unknown keys {sorted(unknown)}")
    missing = REQUIRED[platform] - set(config)
    if missing:
        errors.append(f"missing {sorted(missing)}")
    if not isinstance(config.get("uniq_id"), str) or not config["uniq_id"]:
        errors.append("uniq_id missing")
    if "name" in config and config["name"] is not None and not isinstance(config["name"], str):
        errors.append("name must be a string or null")
    for template, topic in TEMPLATE_NEEDS_TOPIC.items():
        if template in config and topic not in config:
            errors.append(f"{template} without {topic}")
    for key, value in config.items():
        if key.endswith("_t") and (not isinstance(value, str) or "+" in value or "#" in value
                                   or not value):
            errors.append(f"{key} is not a valid topic: {value!r}")
    if config.get("ent_cat") is not None:
        if config["ent_cat"] not in ENTITY_CATEGORIES:
            errors.append("bad ent_cat")
        if platform in ("sensor", "binary_sensor") and config["ent_cat"] == "config":
            errors.append("sensors cannot be config entities")
    device_class = config.get("dev_cla")
    unit = config.get("unit_of_meas")
    if platform == "sensor":
        if device_class is not None and device_class not in SENSOR_CLASSES:
            errors.append(f"bad sensor class {device_class}")
        if "ops" in config:
            if not config["ops"]:
                errors.append("empty options")
            if device_class != "enum" or "stat_cla" in config or unit is not None:
                errors.append("options need dev_cla enum and no unit/state class")
        if device_class in DEVICE_CLASS_UNITS and unit not in DEVICE_CLASS_UNITS[device_class]:
            errors.append(f"unit {unit} invalid for {device_class}")
        if device_class == "energy" and config.get("stat_cla") not in ENERGY_STATE_CLASSES:
            errors.append("energy needs a total state class")
        if config.get("stat_cla") not in (None, "measurement", "total", "total_increasing"):
            errors.append("bad state class")
    if platform == "number":
        if not config["min"] < config["max"]:
            errors.append("number needs min < max")
        if config.get("step", 1) <= 0:
            errors.append("step must be positive")
        if config.get("mode", "auto") not in ("auto", "box", "slider"):
            errors.append("bad number mode")
        if device_class in DEVICE_CLASS_UNITS and unit not in DEVICE_CLASS_UNITS[device_class]:
            errors.append(f"unit {unit} invalid for {device_class}")
    if platform == "binary_sensor" and device_class not in (None, *BINARY_SENSOR_CLASSES):
        errors.append(f"bad binary_sensor class {device_class}")
    if platform == "select" and (not config.get("ops") or len(set(config["ops"])) != len(
            config["ops"])):
        errors.append("select needs distinct non-empty options")
    if platform == "cover":
        if "cmd_t" not in config and "set_pos_t" not in config:
            errors.append("cover needs cmd_t or set_pos_t")
        if "set_pos_t" in config and "pos_t" not in config:
            errors.append("set_pos_t needs pos_t")
        if device_class not in (None, *COVER_CLASSES):
            errors.append("bad cover class")
        for key in ("pos_open", "pos_clsd"):
            if key in config and not isinstance(config[key], int):
                errors.append(f"{key} must be an integer")
    if platform == "climate":
        modes = config.get("modes", [])
        if not modes or not set(modes) <= HVAC_MODES:
            errors.append(f"bad climate modes {modes}")
        if config.get("precision") not in (None, 0.1, 0.5, 1.0):
            errors.append("bad precision")
        if config.get("temp_unit") not in (None, "C", "F"):
            errors.append("bad temp_unit")
        if "min_temp" in config and "max_temp" in config and not (
                config["min_temp"] < config["max_temp"]):
            errors.append("min_temp >= max_temp")
        if not any(k in config for k in ("temp_cmd_t", "mode_cmd_t")):
            errors.append("climate controls nothing")
    if platform == "light":
        for low, high in (("min_mirs", "max_mirs"), ("min_k", "max_k")):
            if low in config and high in config and not config[low] < config[high]:
                errors.append(f"{low} >= {high}")
        if "bri_scl" in config and (not isinstance(config["bri_scl"], int)
                                    or config["bri_scl"] < 1):
            errors.append("bri_scl must be a positive integer")
    return errors


def check_availability(document: dict[str, Any], device: Device) -> None:
    assert document["avty_mode"] == "all"
    if is_reachability(document):  # shows Disconnected when the device or its hub is gone
        assert document["avty"] == [{"t": "aqara/bridge/state"}]
    else:
        assert document["avty"] == [{"t": "aqara/bridge/state"},
                                    {"t": f"aqara/{device.id}/availability"}]
    assert document["qos"] in (0, 1, 2)


def is_reachability(config: dict[str, Any]) -> bool:
    """The device's Connectivity sensor: its state is the device's availability topic."""
    return config.get("dev_cla") == "connectivity" and str(config.get("stat_t", "")).endswith(
        "/availability")


def check_device_block(document: dict[str, Any], device: Device) -> None:
    dev = document["dev"]
    assert set(dev) <= {"ids", "name", "mf", "mdl", "sw", "hw", "sa", "sn", "cns", "cu",
                        "via_device"}
    assert dev["ids"] == [device_object_id(device.id, OPTIONS)]
    assert dev["name"] == device.name
    assert dev["mf"] == "Aqara"
    assert dev["mdl"] == device.model
    firmware = device.trait(0, "BasicInformation", "FirmwareRevision")
    assert firmware is not None
    assert dev["sw"] == firmware.value
    assert document["o"] == {"name": "aqara-mqtt", "sw": "1.2.3"}


# ---- the whole sample home ----------------------------------------------------------------------


def test_every_device_based_payload_is_valid() -> None:
    total = 0
    for device in home():
        messages = messages_for(device)
        assert list(messages) == [
            f"homeassistant/device/{device_object_id(device.id, OPTIONS)}/config"]
        for topic, payload in messages.items():
            assert "+" not in topic
            assert "#" not in topic
            levels = topic.split("/")
            assert OBJECT_ID.fullmatch(levels[2])
            document = json.loads(payload)
            assert set(document) == {"dev", "o", "avty", "avty_mode", "qos", "cmps"}
            check_device_block(document, device)
            check_availability(document, device)
            assert document["cmps"]
            for key, config in document["cmps"].items():
                assert OBJECT_ID.fullmatch(key), key
                assert config["p"] in PLATFORM_KEYS
                errors = component_errors(config["p"], config)
                assert not errors, (device.id, key, errors)
                total += 1
    assert total >= 100


def test_unique_ids_unique_and_stable() -> None:
    first = {d.id: messages_for(d) for d in home()}
    second = {d.id: messages_for(d) for d in home()}
    assert first == second
    unique_ids = [c["uniq_id"] for d in home() for c in cmps_of(d).values()]
    assert len(unique_ids) == len(set(unique_ids))
    for unique_id in unique_ids:
        assert unique_id.startswith("aqara_mqtt_")
        assert OBJECT_ID.fullmatch(unique_id)


def test_unique_ids_do_not_depend_on_names() -> None:
    device = home()[0]
    renamed = home()[0]
    renamed.name = "Something else entirely"
    ids = sorted(c["uniq_id"] for c in cmps_of(device).values())
    assert ids == sorted(c["uniq_id"] for c in cmps_of(renamed).values())
    friendly = discovery_messages(device, "kitchen_switch", SCHEME, OPTIONS)
    doc = json.loads(next(iter(friendly.values())))
    assert ids == sorted(c["uniq_id"] for c in doc["cmps"].values())
    assert all("kitchen_switch" in c.get("stat_t", "kitchen_switch") for c in doc["cmps"].values())


def test_per_entity_mode_gives_the_same_components() -> None:
    per_entity = DiscoveryOptions(origin_version="1.2.3", device_based=False)
    for device in home():
        device_based = cmps_of(device)
        messages = messages_for(device, per_entity)
        assert len(messages) == len(device_based)
        object_id = device_object_id(device.id, OPTIONS)
        for key, config in device_based.items():
            topic = f"homeassistant/{config['p']}/{object_id}/{key}/config"
            document = json.loads(messages[topic])
            check_device_block(document, device)
            check_availability(document, device)
            component = {k: v for k, v in document.items()
                         if k not in ("dev", "o", "avty", "avty_mode", "qos")}
            assert component == {k: v for k, v in config.items() if k not in ("p", "avty")}
            assert not component_errors(config["p"], {**component, "p": config["p"]})
        assert component_count(messages) == len(device_based)


def test_unchanged_input_gives_byte_identical_output() -> None:
    for device in home():
        assert messages_for(device) == messages_for(device)
        reordered = home()[[d.id for d in home()].index(device.id)]
        reordered.endpoints = dict(reversed(list(reordered.endpoints.items())))
        for endpoint in reordered.endpoints.values():
            endpoint.functions = dict(reversed(list(endpoint.functions.items())))
            for function in endpoint.functions.values():
                function.traits = dict(reversed(list(function.traits.items())))
        assert messages_for(reordered) == messages_for(device), device.id


def _trait_topics(device: Device) -> dict[str, tuple[TraitAddress, Trait]]:
    return {SCHEME.trait(device.id, address): (address, trait)
            for address, trait in device.iter_traits()}


STATE_KEYS = ("stat_t", "bri_stat_t", "clr_temp_stat_t", "pos_t", "temp_stat_t", "curr_temp_t",
              "mode_stat_t", "fan_mode_stat_t", "json_attr_t")
COMMAND_KEYS = ("cmd_t", "bri_cmd_t", "clr_temp_cmd_t", "set_pos_t", "temp_cmd_t", "mode_cmd_t",
                "fan_mode_cmd_t", "hs_cmd_t")


def test_topics_are_the_bridges_trait_topics() -> None:
    """State topics are readable traits' topics; command topics are writable traits' /set
    topics (or the device /set topic for JSON documents)."""
    for device in home():
        topics = _trait_topics(device)
        for config in cmps_of(device).values():
            if is_reachability(config):
                assert config["stat_t"] == SCHEME.availability(device.id)
                continue
            for key in STATE_KEYS:
                if key in config:
                    assert config[key] in topics, (key, config[key])
                    assert topics[config[key]][1].spec.readable
            if "hs_stat_t" in config:
                assert config["hs_stat_t"] == SCHEME.device(device.id)
            for key in COMMAND_KEYS:
                if key not in config:
                    continue
                parsed = SCHEME.parse(config[key])
                if config[key] == SCHEME.device(device.id) + "/set":
                    continue
                assert isinstance(parsed, TraitSet), config[key]
                trait = device.trait(parsed.endpoint_id, parsed.function_code, parsed.trait_code)
                assert trait is not None
                assert trait.spec.writable


def _accepts(spec: TraitSpec, payload: str) -> bool:
    try:
        decode_set(spec, payload, current=None)
    except WriteRejected:
        return False
    return True


def test_command_payloads_are_accepted_by_set() -> None:
    """Every payload Home Assistant will send passes the bridge's /set validation."""
    for device in home():
        topics = _trait_topics(device)

        def spec_at(topic: str, topics: dict[str, tuple[TraitAddress, Trait]] = topics,
                    ) -> TraitSpec:
            return topics[topic.removesuffix("/set")][1].spec

        device_set = SCHEME.device(device.id) + "/set"
        for config in cmps_of(device).values():
            platform = config["p"]
            if platform in ("switch", "light"):
                spec = spec_at(config["cmd_t"])
                assert _accepts(spec, config["pl_on"])
                assert _accepts(spec, config["pl_off"])
            if platform == "button":
                assert _accepts(spec_at(config["cmd_t"]), config["pl_prs"])
            if platform == "select":
                for option in config["ops"]:
                    assert _accepts(spec_at(config["cmd_t"]), option)
            if platform == "number":
                spec = spec_at(config["cmd_t"])
                for number in (config["min"], config["max"]):
                    assert _accepts(spec, str(number))
            if platform == "lock":
                spec = spec_at(config["cmd_t"])
                assert _accepts(spec, config["pl_lock"])
                assert _accepts(spec, config["pl_unlk"])
            if platform == "light":
                if "bri_cmd_t" in config:
                    spec = spec_at(config["bri_cmd_t"])
                    assert _accepts(spec, "1")
                    assert _accepts(spec, str(config["bri_scl"]))
                if "clr_temp_cmd_t" in config:
                    spec = spec_at(config["clr_temp_cmd_t"])
                    assert _accepts(spec, str(config["min_mirs"]))
                    assert _accepts(spec, str(config["max_mirs"]))
                if "hs_cmd_t" in config:
                    assert config["hs_cmd_t"] == device_set
                    for hue, sat in ((0.0, 0.0), (359.6, 100.0), (30.4, 60.7)):
                        document = render(config["hs_cmd_tpl"], hue=hue, sat=sat)
                        for ep, fn, tr, value in decode_device_set(document):
                            trait = device.trait(ep, fn, tr)
                            assert trait is not None
                            decode_set(trait.spec, value)
            if platform == "cover":
                if config["cmd_t"] == device_set:
                    for key in ("pl_open", "pl_cls", "pl_stop"):
                        assert decode_device_set(config[key])
                else:
                    spec = spec_at(config["cmd_t"])
                    assert _accepts(spec, config["pl_open"])
                    assert _accepts(spec, config["pl_cls"])
                spec = spec_at(config["set_pos_t"])
                assert _accepts(spec, "0")
                assert _accepts(spec, "100")
            if platform == "climate":
                spec = spec_at(config["temp_cmd_t"])
                assert _accepts(spec, f"{config['min_temp']:.1f}")
                assert _accepts(spec, f"{config['max_temp']:.1f}")
                mode_spec = spec_at(config["mode_cmd_t"])
                for mode in config["modes"]:
                    label = render(config["mode_cmd_tpl"], value=mode)
                    assert _accepts(mode_spec, label)
                    assert render(config["mode_stat_tpl"], value=label) == mode
                for fan_mode in config.get("fan_modes", []):
                    assert _accepts(spec_at(config["fan_mode_cmd_t"]), fan_mode)


def test_state_payloads_match_what_home_assistant_expects() -> None:
    """The bridge's current trait payloads are states the entities understand."""
    for device in home():
        topics = _trait_topics(device)

        def payload(topic: str, topics: dict[str, tuple[TraitAddress, Trait]] = topics) -> str:
            _, trait = topics[topic]
            return to_payload(trait.spec, trait.value)

        for config in cmps_of(device).values():
            platform = config["p"]
            if is_reachability(config):  # the topic tree's availability payloads
                assert (config["pl_on"], config["pl_off"]) == ("online", "offline")
                continue
            if platform == "binary_sensor" and "val_tpl" not in config:
                assert payload(config["stat_t"]) in (config["pl_on"], config["pl_off"])
            if platform == "binary_sensor" and "val_tpl" in config:
                assert render(config["val_tpl"], value=payload(config["stat_t"])) in ("ON", "OFF")
            if platform == "switch":
                assert payload(config["stat_t"]) in (config["stat_on"], config["stat_off"])
            if platform == "light":
                assert payload(config["stat_t"]) in (config["pl_on"], config["pl_off"])
                if "hs_val_tpl" in config:
                    document: dict[str, dict[str, dict[str, Any]]] = {
                        str(a.endpoint_id): {} for a, _ in device.iter_traits()}
                    for address, trait in device.iter_traits():
                        document[str(address.endpoint_id)].setdefault(
                            address.function_code, {})[address.trait_code] = trait.value
                    hs = render(config["hs_val_tpl"], value_json=document)
                    hue, sat = (float(x) for x in hs.split(","))
                    assert 0 <= hue <= 360
                    assert 0 <= sat <= 100
            if platform in ("select",) or (platform == "sensor" and "ops" in config):
                assert payload(config["stat_t"]) in config["ops"]
            if platform == "sensor" and "stat_cla" in config:
                float(payload(config["stat_t"]))
            if platform == "number":
                assert config["min"] <= float(payload(config["stat_t"])) <= config["max"]
            if platform == "cover" and "stat_t" in config:
                states = {config[k] for k in ("stat_opening", "stat_closing", "stat_stopped")}
                assert payload(config["stat_t"]) in states
                assert 0 <= float(payload(config["pos_t"])) <= 100
            if platform == "climate":
                mode = render(config["mode_stat_tpl"], value=payload(config["mode_stat_t"]))
                assert mode in config["modes"]
                assert payload(config["fan_mode_stat_t"]) in config["fan_modes"]
                float(payload(config["curr_temp_t"]))


def test_everything_is_json_with_safe_topics() -> None:
    for device in home():
        for options in (OPTIONS, DiscoveryOptions(device_based=False, prefix="ha/discovery")):
            for topic, payload in messages_for(device, options).items():
                assert topic.endswith("/config")
                assert not set(topic) & {"+", "#", "\x00"}
                json.loads(payload)
                assert payload == dumps(json.loads(payload))  # compact, sorted keys


# ---- the mapping table, case by case ------------------------------------------------------------

B = TraitType.BOOLEAN
N = TraitType.NUMBER


@pytest.mark.parametrize(
    ("function", "code", "spec", "value", "platform", "device_class", "extra"),
    [
        ("Output", "OnOff", TraitSpec(B, writable=True), True, "switch", None,
         {"pl_on": "true", "pl_off": "false", "stat_on": "true", "stat_off": "false"}),
        ("Output", "OnOff", TraitSpec(B, readable=False, writable=True), None, "button", None,
         {"pl_prs": "true"}),
        ("BooleanState", "ContactSensorState", TraitSpec(B), True, "binary_sensor", "door",
         {"pl_on": "false", "pl_off": "true"}),
        ("OccupancySensing", "Occupancy", TraitSpec(B), False, "binary_sensor", "occupancy",
         {"pl_on": "true", "pl_off": "false"}),
        ("MotionSensing", "MotionDetected", TraitSpec(B), False, "binary_sensor", "motion", {}),
        ("BooleanState", "LeakState", TraitSpec(B), False, "binary_sensor", "moisture", {}),
        ("SmokeCoAlarm", "SmokeDetected", TraitSpec(B), False, "binary_sensor", "smoke", {}),
        ("SmokeCoAlarm", "CODetected", TraitSpec(B), False, "binary_sensor", "carbon_monoxide",
         {}),
        ("PowerSource", "BatReplacementNeeded", TraitSpec(B), False, "binary_sensor", "battery",
         {"ent_cat": "diagnostic"}),
        ("BasicInformation", "Reachable", TraitSpec(B), True, "binary_sensor", "connectivity",
         {"ent_cat": "diagnostic", "pl_on": "online", "pl_off": "offline",
          "avty": [{"t": "aqara/bridge/state"}]}),
        ("Wireless", "ChargerConnected", TraitSpec(B), True, "binary_sensor", "connectivity",
         {"pl_on": "true"}),
        ("Whatever", "SomeFlag", TraitSpec(B), True, "binary_sensor", None, {}),
        ("LevelControl", "CurrentLevel",
         TraitSpec(N, "Uint8", "%", 0, 100, 1, writable=True), 50, "number", None,
         {"min": 0, "max": 100, "step": 1, "mode": "slider", "unit_of_meas": "%"}),
        ("Thermostat", "SetTemperature",
         TraitSpec(N, "Float", "°C", 5, 30, 0.5, writable=True), 21, "number", "temperature",
         {"min": 5, "max": 30, "step": 0.5}),
        ("Custom", "Setting", TraitSpec(N, "Float", writable=True), 1.5, "number", None,
         {"mode": "box"}),
        ("TemperatureMeasurement", "CurrentTemperature", TraitSpec(N, "Float", "°C"), 21.5,
         "sensor", "temperature", {"stat_cla": "measurement", "unit_of_meas": "°C"}),
        ("TemperatureMeasurement", "CurrentTemperature", TraitSpec(N, "Float", "℃"), 21.5,
         "sensor", "temperature", {"unit_of_meas": "°C"}),
        ("RelativeHumidityMeasurement", "CurrentHumidity", TraitSpec(N, "Float", "%"), 40,
         "sensor", "humidity", {"stat_cla": "measurement"}),
        ("PowerSource", "BatPercentRemaining", TraitSpec(N, "Uint8", "%"), 90, "sensor",
         "battery", {"ent_cat": "diagnostic"}),
        ("EnergyManagement", "CurrentPower", TraitSpec(N, "Float", "W"), 5, "sensor", "power",
         {}),
        ("EnergyManagement", "CurrentVoltage", TraitSpec(N, "Float", "V"), 230, "sensor",
         "voltage", {}),
        ("EnergyManagement", "CircuitCurrent", TraitSpec(N, "Float", "A"), 1, "sensor",
         "current", {}),
        ("EnergyManagement", "CumulativeEnergyConsumption", TraitSpec(N, "Float", "kWh"), 12,
         "sensor", "energy", {"stat_cla": "total_increasing"}),
        ("IlluminanceMeasurement", "CurrentIlluminance", TraitSpec(N, "Uint16", "lx"), 5,
         "sensor", "illuminance", {}),
        ("AirQuality", "CO2Density", TraitSpec(N, "Uint16", "ppm"), 600, "sensor",
         "carbon_dioxide", {}),
        ("AirQuality", "PM2.5Density", TraitSpec(N, "Uint16", "µg/m³"), 8, "sensor", "pm25", {}),
        ("AirQuality", "PM10Density", TraitSpec(N, "Uint16", "µg/m³"), 8, "sensor", "pm10", {}),
        ("AirQuality", "VOCDensity", TraitSpec(N, "Uint16", "ppb"), 8, "sensor",
         "volatile_organic_compounds_parts", {}),
        ("PressureMeasurement", "CurrentPressure", TraitSpec(N, "Float", "hPa"), 1013, "sensor",
         "pressure", {}),
        ("PressureMeasurement", "CurrentPressure", TraitSpec(N, "Float", "kPa"), 101, "sensor",
         "pressure", {}),
        ("Timer", "countdown_left", TraitSpec(N, "int", "s", 0, 86400, 1), 5, "sensor",
         "duration", {"stat_cla": "measurement"}),
        ("Odd", "Reading", TraitSpec(N, "Float", "furlong"), 1, "sensor", None,
         {"unit_of_meas": "furlong", "stat_cla": "measurement"}),
        ("Odd", "Humidityish", TraitSpec(N, "Float", "g/m³"), 1, "sensor", None, {}),
        ("Thermostat", "FanMode",
         TraitSpec(TraitType.ENUM, enums=(EnumOption("Low", "1"), EnumOption("High", "2")),
                   writable=True), "1", "select", None, {"ops": ["Low", "High"]}),
        ("AirQuality", "AirQualityLevel",
         TraitSpec(TraitType.ENUM, enums=(EnumOption("Good", "1"), EnumOption("Poor", "3"))),
         "1", "sensor", "enum", {"ops": ["Good", "Poor"]}),
        ("Custom", "Mode", TraitSpec(TraitType.ENUM), "x", "sensor", None, {}),
        ("Custom", "Label", TraitSpec(TraitType.STRING, writable=True), "x", "text", None,
         {"min": 0, "max": 255}),
        ("BasicInformation", "FirmwareRevision", TraitSpec(TraitType.STRING), "1.0", "sensor",
         None, {"ent_cat": "diagnostic"}),
        ("Diagnostics", "NetworkStatus", TraitSpec(TraitType.OTHER, "Json"), {"a": 1}, "sensor",
         None, {"en": False, "ent_cat": "diagnostic", "val_tpl": "{{ value[:255] }}"}),
    ],
)
def test_mapping(function: str, code: str, spec: TraitSpec, value: Any, platform: str,
                 device_class: str | None, extra: dict[str, Any]) -> None:
    device = one_trait_device(function, code, spec, value)
    config = only_component(device)
    assert config["p"] == platform
    assert config.get("dev_cla") == device_class
    for key, expected in extra.items():
        assert config[key] == expected, key
    assert not component_errors(platform, config)
    topic = SCHEME.trait(device.id, TraitAddress(device.id, 1, function, code))
    if code == "Reachable":
        topic = SCHEME.availability(device.id)
    assert config.get("stat_t") == (topic if spec.readable else None)
    assert config.get("cmd_t") == (topic + "/set" if spec.writable and platform != "sensor"
                                   else None)


def test_traits_neither_readable_nor_writable_and_descriptors_are_skipped() -> None:
    assert messages_for(one_trait_device(
        "Output", "OnOff", TraitSpec(B, readable=False, writable=False))) == {}
    assert messages_for(one_trait_device(
        "Descriptor", "EndpointArrayDynamic", TraitSpec(TraitType.OTHER, "Array"), [0, 1])) == {}
    assert messages_for(one_trait_device(
        "Custom", "Blob", TraitSpec(TraitType.OTHER, readable=False, writable=True))) == {}


def test_other_arrays_get_no_attributes_topic() -> None:
    config = only_component(one_trait_device("Custom", "List", TraitSpec(TraitType.OTHER, "Array"),
                                             [1, 2]))
    assert "json_attr_t" not in config


def test_numeric_device_class_only_with_a_valid_unit() -> None:
    assert numeric_device_class("X", "CurrentTemperature", "°C") == "temperature"
    assert numeric_device_class("X", "CO2Density", "ppm") == "carbon_dioxide"
    assert numeric_device_class("X", "CODensity", "ppm") == "carbon_monoxide"
    assert numeric_device_class("X", "Cooling", "ppm") is None
    assert numeric_device_class("X", "PM1Density", "μg/m³") == "pm1"
    assert numeric_device_class("X", "Volume", "%") is None
    assert numeric_device_class("X", "Thing", None) is None
    assert numeric_device_class("X", "Rssi", "dBm") == "signal_strength"
    for cls in DEVICE_CLASS_UNITS:
        assert DEVICE_CLASS_UNITS[cls]


def test_binary_class_rules() -> None:
    assert binary_class("ContactSensorState", (), "Balcony Window").device_class == "window"
    assert binary_class("ContactSensorState", (), "Front Door").inverted
    assert binary_class("StateValue", ("ContactSensor",)).device_class == "door"
    assert binary_class("StateValue", ("WaterLeakDetector",)).device_class == "moisture"
    assert binary_class("Something").device_class is None


def test_endpoint_zero_traits_are_diagnostic_or_config() -> None:
    for device in home():
        for key, config in cmps_of(device).items():
            if key.startswith("ep0_"):
                expected = "config" if "cmd_t" in config and config["p"] not in (
                    "sensor", "binary_sensor") else "diagnostic"
                assert config["ent_cat"] == expected, key
    writable = one_trait_device("Settings", "Volume", TraitSpec(N, "Uint8", "%", 0, 100, 1,
                                                                 writable=True), 5, endpoint_id=0)
    assert only_component(writable)["ent_cat"] == "config"


# ---- composites ---------------------------------------------------------------------------------


def _by_platform(device: Device) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for config in cmps_of(device).values():
        out.setdefault(config["p"], []).append(config)
    return out


def _device(name: str) -> Device:
    return next(d for d in home() if d.name == name)


def test_ct_light_is_one_light_entity() -> None:
    device = _device("Dining Light")
    platforms = _by_platform(device)
    assert "switch" not in platforms
    assert "number" not in platforms
    (light,) = platforms["light"]
    base = f"aqara/{device.id}/1"
    assert light["cmd_t"] == f"{base}/Output/OnOff/set"
    assert light["stat_t"] == f"{base}/Output/OnOff"
    assert light["bri_cmd_t"] == f"{base}/LevelControl/CurrentLevel/set"
    assert light["bri_stat_t"] == f"{base}/LevelControl/CurrentLevel"
    assert light["bri_scl"] == 100
    assert light["clr_temp_cmd_t"] == f"{base}/ColorControl/ColorTemperature/set"
    assert (light["min_mirs"], light["max_mirs"]) == (153, 500)
    assert "hs_cmd_t" not in light
    assert light["name"] is None  # the device's main entity takes the device's name


def test_colour_light_sends_hue_and_saturation_in_one_document() -> None:
    device = _device("Bedroom LED Strip")
    (light,) = _by_platform(device)["light"]
    assert light["hs_cmd_t"] == f"aqara/{device.id}/set"
    assert json.loads(render(light["hs_cmd_tpl"], hue=30.4, sat=60.6)) == {
        "1": {"ColorControl": {"Hue": 30, "Saturation": 61}}}
    assert light["hs_stat_t"] == f"aqara/{device.id}"
    assert render(light["hs_val_tpl"], value_json={
        "1": {"ColorControl": {"Hue": 30, "Saturation": 60}}}) == "30,60"
    without_doc = DiscoveryOptions(device_state_topic=False)
    (light,) = [c for c in cmps_of(device, without_doc).values() if c["p"] == "light"]
    assert "hs_cmd_t" in light
    assert "hs_stat_t" not in light
    assert "hs_val_tpl" not in light
    names = {c["p"] for c in cmps_of(device).values()}
    assert "number" not in names


def test_hs_scaling_for_non_degree_ranges() -> None:
    hue = TraitSpec(N, "Uint8", None, 0, 254, 1, writable=True)
    sat = TraitSpec(N, "Uint8", None, 0, 254, 1, writable=True)
    device = Device("lumi.0000000002", "Lamp", "studio", "x", (), True, {1: Endpoint(1, (), {
        "Output": Function("Output", {"OnOff": Trait("OnOff", TraitSpec(B, writable=True))}),
        "ColorControl": Function("ColorControl", {"Hue": Trait("Hue", hue, 127),
                                                  "Saturation": Trait("Saturation", sat, 254)}),
    })})
    light = only_component(device)
    document = json.loads(render(light["hs_cmd_tpl"], hue=180.0, sat=100.0))
    assert document == {"1": {"ColorControl": {"Hue": 127, "Saturation": 254}}}
    assert render(light["hs_val_tpl"], value_json={
        "1": {"ColorControl": {"Hue": 127, "Saturation": 254}}}) == "180.0,100.0"


def test_kelvin_colour_temperature() -> None:
    ct = TraitSpec(N, "Uint16", "K", 2700, 6500, 1, writable=True)
    device = Device("lumi.0000000003", "Lamp", "studio", "x", (), True, {1: Endpoint(1, (), {
        "Output": Function("Output", {"OnOff": Trait("OnOff", TraitSpec(B, writable=True))}),
        "ColorControl": Function("ColorControl", {"ColorTemperature": Trait("ColorTemperature",
                                                                            ct, 3000)}),
    })})
    light = only_component(device)
    assert light["clr_temp_k"] is True
    assert (light["min_k"], light["max_k"]) == (2700, 6500)
    assert not component_errors("light", light)


def test_onoff_on_a_light_endpoint_is_a_light_but_on_a_switch_endpoint_a_switch() -> None:
    spec = TraitSpec(B, writable=True)
    assert only_component(one_trait_device("Output", "OnOff", spec, True,
                                           types=("Light",)))["p"] == "light"
    assert only_component(one_trait_device("Output", "OnOff", spec, True,
                                           types=("Switch",)))["p"] == "switch"
    level = only_component(one_trait_device(
        "LevelControl", "CurrentLevel", TraitSpec(N, "Uint8", "%", 0, 100, 1, writable=True), 5))
    assert level["p"] == "number"


def test_curtain_is_a_cover() -> None:
    device = _device("Living Room Curtain")
    platforms = _by_platform(device)
    (cover,) = platforms["cover"]
    base = f"aqara/{device.id}/1/WindowCovering"
    assert cover["set_pos_t"] == f"{base}/TargetPositionPercentage/set"
    assert cover["pos_t"] == f"{base}/CurrentPositionPercentage"
    assert cover["cmd_t"] == f"{base}/TargetPositionPercentage/set"
    assert (cover["pl_open"], cover["pl_cls"], cover["pl_stop"]) == ("100", "0", None)
    assert cover["stat_t"] == f"{base}/OperationalStatus"
    assert (cover["stat_opening"], cover["stat_closing"], cover["stat_stopped"]) == (
        "Opening", "Closing", "Stopped")
    assert cover["dev_cla"] == "curtain"
    assert "number" not in platforms
    assert not any("WindowCovering" in c.get("stat_t", "") for c in platforms.get("sensor", []))


def test_cover_with_only_a_target_and_a_writable_stop() -> None:
    target = TraitSpec(N, "Uint8", "%", 0, 100, 1, readable=False, writable=True)
    status = TraitSpec(TraitType.ENUM, enums=(EnumOption("Stopped", "0"),
                                              EnumOption("Opening", "1"),
                                              EnumOption("Closing", "2")), writable=True)
    device = Device("lumi.0000000004", "Blind", "studio", "x", (), True, {1: Endpoint(1, (), {
        "WindowCovering": Function("WindowCovering", {
            "TargetPositionPercentage": Trait("TargetPositionPercentage", target),
            "OperationalStatus": Trait("OperationalStatus", status, "0")}),
    })})
    cover = only_component(device)
    assert "set_pos_t" not in cover
    assert "pos_t" not in cover
    assert cover["cmd_t"] == f"aqara/{device.id}/set"
    assert decode_device_set(cover["pl_stop"]) == [
        (1, "WindowCovering", "OperationalStatus", '"Stopped"')]
    assert decode_device_set(cover["pl_open"]) == [
        (1, "WindowCovering", "TargetPositionPercentage", "100")]
    assert not component_errors("cover", cover)


def test_thermostat_is_a_climate() -> None:
    device = _device("Hallway Thermostat")
    platforms = _by_platform(device)
    (climate,) = platforms["climate"]
    base = f"aqara/{device.id}/1"
    assert climate["temp_cmd_t"] == f"{base}/Thermostat/SetTemperature/set"
    assert climate["temp_stat_t"] == f"{base}/Thermostat/SetTemperature"
    assert climate["curr_temp_t"] == f"{base}/TemperatureMeasurement/CurrentTemperature"
    assert (climate["min_temp"], climate["max_temp"], climate["temp_step"]) == (5, 30, 0.5)
    assert climate["temp_unit"] == "C"
    assert climate["modes"] == ["off", "heat", "cool", "auto", "dry", "fan_only"]
    assert render(climate["mode_cmd_tpl"], value="fan_only") == "Fan"
    assert render(climate["mode_stat_tpl"], value="Heat") == "heat"
    assert render(climate["mode_stat_tpl"], value="Weird") == "Weird"
    assert climate["fan_modes"] == ["Auto", "Low", "Medium", "High"]
    assert "select" not in platforms
    assert "number" not in platforms
    # the measured temperature stays a sensor too, for long-term statistics
    assert [c["name"] for c in platforms["sensor"] if c.get("dev_cla") == "temperature"] == [
        "Temperature"]


def test_writable_lock_is_a_lock_and_read_only_a_binary_sensor() -> None:
    states = (EnumOption("NotFullyLocked", "0"), EnumOption("Locked", "1"),
              EnumOption("Unlocked", "2"))
    lock = only_component(one_trait_device(
        "DoorLock", "LockState", TraitSpec(TraitType.ENUM, enums=states, writable=True), "1"))
    assert lock["p"] == "lock"
    assert (lock["pl_lock"], lock["pl_unlk"], lock["stat_locked"], lock["stat_unlocked"]) == (
        "Locked", "Unlocked", "Locked", "Unlocked")
    # not fully locked is shown as unlocked: it is not locked, and nothing is jammed
    assert "stat_jam" not in lock
    assert render(lock["val_tpl"], value="NotFullyLocked") == "Unlocked"
    assert render(lock["val_tpl"], value="Locked") == "Locked"
    assert lock["name"] is None  # the lock is the device
    sensor = only_component(one_trait_device(
        "DoorLock", "LockState", TraitSpec(TraitType.ENUM, enums=states), "1"))
    assert sensor["p"] == "binary_sensor"
    assert sensor["dev_cla"] == "lock"
    assert sensor["name"] is None  # "Front Door Lock", not "Front Door Lock Lock"
    assert render(sensor["val_tpl"], value="Locked") == "OFF"
    assert render(sensor["val_tpl"], value="Unlocked") == "ON"
    assert render(sensor["val_tpl"], value="NotFullyLocked") == "ON"


def test_labels_with_template_characters_are_escaped() -> None:
    modes = (EnumOption("O'ff}}", "0"), EnumOption("He{%at#", "1"))
    device = Device("lumi.0000000008", "Heater", "studio", "x", (), True, {1: Endpoint(1, (), {
        "Thermostat": Function("Thermostat", {
            "SetTemperature": Trait("SetTemperature", TraitSpec(N, "Float", "°C", 5, 30, 0.5,
                                                                writable=True), 20),
            "HeaterCoolerMode": Trait("HeaterCoolerMode", TraitSpec(
                TraitType.ENUM, enums=modes, writable=True), "1")}),
    })})
    climate = only_component(device)
    assert climate["modes"] == ["off", "heat"]
    for key in ("mode_cmd_tpl", "mode_stat_tpl"):
        body = climate[key][3:-3]  # inside "{{ " ... " }}"
        assert not any(s in body for s in ("}}", "{%", "{#", "%}"))
    assert render(climate["mode_cmd_tpl"], value="off") == "O'ff}}"
    assert render(climate["mode_stat_tpl"], value="He{%at#") == "heat"


# ---- naming -------------------------------------------------------------------------------------


def test_multi_endpoint_names() -> None:
    names = {k: c["name"] for k, c in cmps_of(_device("Living Room Wall Switch")).items()}
    # rockers on endpoints 2 and 3 are the device's switch 1 and 2, and the device's name
    # already says Switch: Home Assistant shows "Living Room Wall Switch 1" and "… 2"
    assert names["ep2_output_on_off"] == "1"
    assert names["ep3_output_on_off"] == "2"
    assert names["ep1_energy_management_current_power"] == "Power"
    assert names["ep1_energy_management_cumulative_energy_consumption"] == "Energy"
    assert names["ep0_basic_information_firmware_revision"] == "Firmware"


def test_left_right_endpoint_types_name_the_switches() -> None:
    spec = TraitSpec(B, writable=True)
    device = Device("lumi.0000000005", "Double", "studio", "x", (), True, {
        1: Endpoint(1, ("Switch", "Left"), {"Output": Function("Output", {
            "OnOff": Trait("OnOff", spec, True)})}),
        2: Endpoint(2, ("Switch", "Right"), {"Output": Function("Output", {
            "OnOff": Trait("OnOff", spec, False)})}),
    })
    assert sorted(c["name"] for c in cmps_of(device).values()) == ["Left", "Right"]


def test_single_main_entity_takes_the_device_name() -> None:
    for name in ("Hallway Switch", "Kitchen Plug / Kettle", "Living Room Curtain",
                 "Hallway Thermostat", "Dining Light"):
        nulls = [c for c in cmps_of(_device(name)).values() if c["name"] is None]
        assert len(nulls) == 1, name
    for device in home():
        names = [c["name"] for c in cmps_of(device).values()]
        assert len(names) == len(set(names)), (device.name, names)


def test_names_of_single_instance_traits() -> None:
    names = {c["name"] for c in cmps_of(_device("Study Air Monitor")).values()}
    assert {"Temperature", "Humidity", "CO2", "PM2.5", "PM10", "VOC", "Air quality"} <= names
    assert humanize("HeaterCoolerMode") == "Heater cooler mode"
    assert humanize("CO2Density") == "CO2 density"


# ---- ids, diffs, options ------------------------------------------------------------------------


def test_safe_id_is_injective_on_realistic_ids() -> None:
    assert safe_id("lumi1.54ef448a0b73") == "lumi1_54ef448a0b73"
    assert safe_id("a_b") != safe_id("a.b")
    assert safe_id("a b") != safe_id("a_b")
    ids = [safe_id(x) for x in ("a.b", "a_b", "a-b", "a b", "A.B", "a/b", "", "é")]
    assert len(set(ids)) == len(ids)
    assert all(OBJECT_ID.fullmatch(i) for i in ids)
    assert snake("PM2.5Density") == "pm2_5_density"
    assert snake("OnOff") == "on_off"


def test_colliding_component_ids_are_disambiguated() -> None:
    spec = TraitSpec(N, "Float", "W")
    device = Device("lumi.0000000006", "Odd", "studio", "x", (), True, {1: Endpoint(1, (), {
        "Energy": Function("Energy", {"OnOff": Trait("OnOff", spec, 1),
                                      "On_Off": Trait("On_Off", spec, 2)}),
    })})
    cmps = cmps_of(device)
    assert len(cmps) == 2
    assert len({c["uniq_id"] for c in cmps.values()}) == 2


def test_discovery_changes() -> None:
    device = _device("Bedroom Climate")
    current = messages_for(device)
    assert discovery_changes(current, current) == {}
    assert discovery_changes({}, current) == current
    assert discovery_changes(current, {}) == dict.fromkeys(current, "")
    smaller = _device("Bedroom Climate")
    del smaller.endpoints[1].functions["PressureMeasurement"]
    after = messages_for(smaller)
    changes = discovery_changes(current, after)
    (topic,) = changes
    cmps = json.loads(changes[topic])["cmps"]
    assert cmps["ep1_pressure_measurement_current_pressure"] == {"p": "sensor"}
    assert component_count(changes) == component_count(after) == component_count(current) - 1
    per_entity = DiscoveryOptions(device_based=False)
    before_pe, after_pe = messages_for(device, per_entity), messages_for(smaller, per_entity)
    changes_pe = discovery_changes(before_pe, after_pe)
    assert list(changes_pe.values()) == [""]
    assert discovery_topics_for(device, device.id, SCHEME, per_entity) == sorted(before_pe)


def test_no_entities_no_message() -> None:
    empty = Device("lumi.0000000007", "Empty", "studio")
    assert discovery_messages(empty, empty.id, None, OPTIONS) == {}
    assert components(empty, empty.id, SCHEME, OPTIONS) == {}


def test_options() -> None:
    device = _device("Hallway Switch")
    options = DiscoveryOptions(prefix="ha", node_id="bridge2", qos=0,
                               origin_url="https://example.org/aqara-mqtt",
                               base_topic="home/aqara")
    messages = discovery_messages(device, device.id, None, options)
    (topic,) = messages
    assert topic == f"ha/device/bridge2_{safe_id(device.id)}/config"
    document = json.loads(messages[topic])
    assert document["qos"] == 0
    assert document["o"]["url"] == "https://example.org/aqara-mqtt"
    assert document["avty"][0] == {"t": "home/aqara/bridge/state"}
    assert all(c["uniq_id"].startswith("bridge2_") for c in document["cmps"].values())
    for bad in ({"prefix": ""}, {"prefix": "a/+"}, {"prefix": "/x"}, {"node_id": "a.b"},
                {"qos": 3}):
        with pytest.raises(ValueError, match=r"must|may only"):
            DiscoveryOptions(**bad)


# ---- Tuya-shaped devices (one endpoint, snake_case DP codes) ----------------------------------


def tuya_device(function: str, traits: dict[str, Trait], category: str = "dj",
                name: str = "Tuya thing") -> Device:
    return Device("bf0123456789abcdef", name, "tuya", "Thing", (category,), True, {
        1: Endpoint(1, (category,), {function: Function(function, traits)})})


def test_tuya_light() -> None:
    device = tuya_device("light", {
        "switch_led": Trait("switch_led", TraitSpec(B, writable=True), True),
        "work_mode": Trait("work_mode", TraitSpec(TraitType.ENUM, enums=(
            EnumOption("white", "white"), EnumOption("colour", "colour")), writable=True),
            "white"),
        "bright_value_v2": Trait("bright_value_v2", TraitSpec(N, "int", None, 10, 1000, 1,
                                                              writable=True), 800),
        "temp_value_v2": Trait("temp_value_v2", TraitSpec(N, "int", None, 0, 1000, 1,
                                                          writable=True), 500),
        "colour_data_v2": Trait("colour_data_v2", TraitSpec(TraitType.OTHER, "Json",
                                                            writable=True), {"h": 0}),
    })
    platforms = _by_platform(device)
    (light,) = platforms["light"]
    assert light["cmd_t"].endswith("/1/light/switch_led/set")
    assert light["bri_scl"] == 1000
    assert render(light["bri_cmd_tpl"], value=4) == "10"
    assert render(light["bri_cmd_tpl"], value=600) == "600"
    assert "clr_temp_cmd_t" not in light  # 0..1000 is not a mired range
    assert [c["name"] for c in platforms["number"]] == ["Temp value v2"]
    assert [c["ops"] for c in platforms["select"]] == [["white", "colour"]]
    assert light["name"] is None
    for config in cmps_of(device).values():
        assert not component_errors(config["p"], config)


def test_tuya_curtain() -> None:
    control = TraitSpec(TraitType.ENUM, enums=tuple(EnumOption(x, x) for x in (
        "open", "stop", "close", "continue")), writable=True)
    percent = TraitSpec(N, "int", "%", 0, 100, 1, writable=True)
    device = tuya_device("cover", {
        "control": Trait("control", control, "open"),
        "percent_control": Trait("percent_control", percent, 0),
        "percent_state": Trait("percent_state", TraitSpec(N, "int", "%", 0, 100, 1), 0),
        "work_state": Trait("work_state", TraitSpec(TraitType.ENUM, enums=(
            EnumOption("opening", "opening"), EnumOption("closing", "closing"))), "opening"),
    }, category="qt", name="All-in-one curtain")
    cover = only_component(device)
    assert cover["p"] == "cover"
    assert cover["cmd_t"].endswith("/1/cover/control/set")
    assert (cover["pl_open"], cover["pl_cls"], cover["pl_stop"]) == ("open", "close", "stop")
    assert cover["set_pos_t"].endswith("/1/cover/percent_control/set")
    assert cover["pos_t"].endswith("/1/cover/percent_state")
    assert cover["stat_t"].endswith("/1/cover/work_state")
    assert cover["dev_cla"] == "curtain"
    assert not component_errors("cover", cover)
    for payload in (cover["pl_open"], cover["pl_cls"], cover["pl_stop"]):
        assert _accepts(control, payload)


def test_tuya_switches_and_sensors() -> None:
    on = TraitSpec(B, writable=True)
    single = tuya_device("switch", {"switch_1": Trait("switch_1", on, True)}, category="cz")
    assert only_component(single)["name"] is None
    double = tuya_device("switch", {"switch_1": Trait("switch_1", on, True),
                                    "switch_2": Trait("switch_2", on, False)}, category="kg")
    assert sorted(c["name"] for c in cmps_of(double).values()) == ["Switch 1", "Switch 2"]
    door = only_component(tuya_device("sensor", {
        "doorcontact_state": Trait("doorcontact_state", TraitSpec(B), True)}, category="mcs"))
    assert door["dev_cla"] == "door"
    assert (door["pl_on"], door["pl_off"]) == ("true", "false")  # Tuya: true = open
    sensors = cmps_of(tuya_device("sensor", {
        "va_temperature": Trait("va_temperature", TraitSpec(N, "float", "℃", -20, 60, 0.1),
                                21.5),
        "va_humidity": Trait("va_humidity", TraitSpec(N, "int", "%", 0, 100, 1), 40),
        "battery_percentage": Trait("battery_percentage", TraitSpec(N, "int", "%", 0, 100, 1),
                                    80),
        "pm25_value": Trait("pm25_value", TraitSpec(N, "int", "ug/m3", 0, 999, 1), 5),
    }, category="wsdcg"))
    classes = {k.rsplit("_sensor_", 1)[1]: (c.get("dev_cla"), c.get("unit_of_meas"))
               for k, c in sensors.items()}
    assert classes == {"va_temperature": ("temperature", "°C"), "va_humidity": ("humidity", "%"),
                       "battery_percentage": ("battery", "%"), "pm25_value": ("pm25", "µg/m³")}


def test_relay_switches_are_numbered_from_one_and_linked_to_their_hub() -> None:
    device = _device("Living Room Wall Switch")
    device.name = "Garage Relay"
    device.extra["room"] = "Garage"
    (message,) = discovery_messages(device, device.id, None, OPTIONS, "lumi1.54ef44100000")
    document = json.loads(discovery_messages(device, device.id, None, OPTIONS,
                                             "lumi1.54ef44100000")[message])
    assert document["dev"]["via_device"] == "aqara_mqtt_lumi1_54ef44100000"
    assert document["dev"]["sa"] == "Garage"
    names = {k: c["name"] for k, c in document["cmps"].items()}
    assert (names["ep2_output_on_off"], names["ep3_output_on_off"]) == ("Switch 1", "Switch 2")
    hub = discovery_messages(device, device.id, None, OPTIONS, device.id)
    assert "via_device" not in json.loads(next(iter(hub.values())))["dev"]  # not its own hub


# ---- Connectivity, off-grid commands, names (issue 24) ------------------------------------------


def _reachable_device() -> Device:
    root = Endpoint(0, ("Root",), {"BasicInformation": Function("BasicInformation", {
        "Reachable": Trait("Reachable", TraitSpec(B), True)})})
    charger = Endpoint(1, ("Charger",), {"Wireless": Function("Wireless", {
        "ChargerConnected": Trait("ChargerConnected", TraitSpec(B), False)})})
    return Device("lumi.0000000007", "Pad", "studio", "x", (), True, {0: root, 1: charger})


def test_connectivity_is_the_devices_availability_not_its_stale_trait() -> None:
    """Reachable's retained value goes stale with the hub; the availability topic is set
    offline for an unreachable device and for a hub that is down. Only bridge/state makes the
    sensor unavailable; any other connectivity trait is a plain one (both availabilities)."""
    document = json.loads(next(iter(messages_for(_reachable_device()).values())))
    cmps = document["cmps"]
    reachable = cmps["ep0_basic_information_reachable"]
    assert reachable["stat_t"] == "aqara/lumi.0000000007/availability"
    assert (reachable["pl_on"], reachable["pl_off"]) == ("online", "offline")
    assert reachable["avty"] == [{"t": "aqara/bridge/state"}]
    assert reachable["name"] == "Connectivity"
    charger = cmps["ep1_wireless_charger_connected"]
    assert charger["stat_t"] == "aqara/lumi.0000000007/1/Wireless/ChargerConnected"
    assert "avty" not in charger  # inherits the device's: bridge/state and availability
    assert document["avty"] == [{"t": "aqara/bridge/state"},
                                {"t": "aqara/lumi.0000000007/availability"}]
    per_entity = messages_for(_reachable_device(), DiscoveryOptions(device_based=False))
    (topic,) = [t for t in per_entity if "/binary_sensor/" in t and "reachable" in t]
    assert json.loads(per_entity[topic])["avty"] == [{"t": "aqara/bridge/state"}]


def _grid_values(spec: TraitSpec) -> list[float]:
    assert spec.min is not None
    assert spec.max is not None
    assert spec.step
    count = int((spec.max - spec.min) / spec.step + 1e-9)
    return [spec.min + i * spec.step for i in range(count + 1)]


def _nearest(spec: TraitSpec, value: float) -> float:
    return min(_grid_values(spec), key=lambda v: (abs(v - value), v))


@pytest.mark.parametrize("spec", [
    TraitSpec(N, "Float", "°C", 5, 30, 0.5, writable=True),
    TraitSpec(N, "Float", None, -5, 5, 0.1, writable=True),
    TraitSpec(N, "Uint8", "%", 0, 100, 1, writable=True),
    TraitSpec(N, "Uint16", "s", 0, 10, 4, writable=True),  # max 10 is off the grid: 8
    TraitSpec(N, "int", None, 10, 1000, 5, writable=True),
])
def test_off_grid_numbers_are_rounded_to_the_nearest_step(spec: TraitSpec) -> None:
    """Home Assistant checks a number's range but not its step; the command template sends
    the nearest value /set accepts (ties to the even step, as Home Assistant rounds)."""
    config = only_component(one_trait_device("Custom", "Setting", spec))
    assert config["p"] == "number"
    assert config["max"] == _grid_values(spec)[-1]
    low, high, step = config["min"], config["max"], config["step"]
    for i in range(101):
        value = round(low + (high - low) * i / 100 + 0.013 * (i % 7), 3)
        value = float(min(max(value, low), high))  # Home Assistant's range check and clamp
        sent = render(config["cmd_tpl"], value=int(value) if value.is_integer() else value)
        accepted = decode_set(spec, sent)
        assert abs(accepted - _nearest(spec, value)) < 1e-9 or abs(
            abs(value - accepted) - step / 2) < 1e-6, (value, sent)  # a tie
    assert "cmd_tpl" not in only_component(one_trait_device(
        "Custom", "Setting", TraitSpec(N, "Float", writable=True)))  # any float is valid


def test_off_grid_setpoints_brightness_colour_and_position_are_rounded() -> None:
    climate = next(c for c in cmps_of(_device("Hallway Thermostat")).values()
                   if c["p"] == "climate")
    setpoint = _device("Hallway Thermostat").trait(1, "Thermostat", "SetTemperature")
    assert setpoint is not None
    assert decode_set(setpoint.spec, render(climate["temp_cmd_tpl"], value=21.3)) == 21.5
    assert decode_set(setpoint.spec, render(climate["temp_cmd_tpl"], value=21.2)) == 21.0
    stepped = TraitSpec(N, "int", None, 10, 1000, 10, writable=True)
    light = only_component(tuya_device("light", {
        "switch_led": Trait("switch_led", TraitSpec(B, writable=True), True),
        "bright_value_v2": Trait("bright_value_v2", stepped, 500),
        }))
    for value, expected in ((1, 10), (14, 10), (16, 20), (996, 1000), (1000, 1000)):
        assert decode_set(stepped, render(light["bri_cmd_tpl"], value=value)) == expected
    ct_spec = TraitSpec(N, "Uint16", "mired", 153, 500, 10, writable=True)
    ct_light = only_component(Device("lumi.0000000008", "Lamp", "studio", "x", (), True, {
        1: Endpoint(1, ("Light",), {
            "Output": Function("Output", {"OnOff": Trait("OnOff", TraitSpec(B, writable=True),
                                                         True)}),
            "ColorControl": Function("ColorControl", {
                "ColorTemperature": Trait("ColorTemperature", ct_spec, 250)})})}))
    assert decode_set(ct_spec, render(ct_light["clr_temp_cmd_tpl"], value=370)) == 373
    assert decode_set(ct_spec, render(ct_light["clr_temp_cmd_tpl"], value=500)) == 493
    for value, expected in ((100, 153), (900, 493)):  # Home Assistant does not clamp it
        assert decode_set(ct_spec, render(ct_light["clr_temp_cmd_tpl"], value=value)) == expected
    cover_spec = TraitSpec(N, "Uint8", "%", 0, 100, 5, writable=True)
    cover = only_component(one_trait_device("WindowCovering", "TargetPositionPercentage",
                                            cover_spec, 50, types=("WindowCovering",)))
    assert decode_set(cover_spec, render(cover["set_pos_tpl"], value=33)) == 35
    # a whole-number grid that Home Assistant's integers already sit on needs no template
    plain = only_component(one_trait_device("WindowCovering", "TargetPositionPercentage",
                                            TraitSpec(N, "Uint8", "%", 0, 100, 1,
                                                      writable=True), 50))
    assert "set_pos_tpl" not in plain


def test_a_label_the_device_name_ends_with_is_not_said_twice() -> None:
    """Home Assistant shows an entity as "<device> <entity>": "Washing Machine Leak" + "Leak"
    would read "Washing Machine Leak Leak"; the leak sensor takes the device's name."""
    cmps = cmps_of(_device("Washing Machine Leak"))
    assert cmps["ep1_boolean_state_leak_state"]["name"] is None
    for device in home():
        names = [c["name"] for c in cmps_of(device).values() if c.get("name") is not None]
        for name in names:
            words = f"{device.name} {name}".casefold().split()
            assert all(a != b for a, b in itertools.pairwise(words)), (device.name, name)
    leak = TraitSpec(B)
    twice = Device("lumi.0000000009", "Sink Leak", "studio", "x", (), True, {
        1: Endpoint(1, ("WaterLeakDetector",), {"BooleanState": Function("BooleanState", {
            "LeakState": Trait("LeakState", leak, False)})}),
        2: Endpoint(2, ("WaterLeakDetector",), {"BooleanState": Function("BooleanState", {
            "LeakState": Trait("LeakState", leak, False)})})})
    assert sorted(c["name"] for c in cmps_of(twice).values()) == ["1", "2"]
    assert ends_with_words("Hall Air quality", "Air Quality")
    assert not ends_with_words("Leakage", "Leak")
