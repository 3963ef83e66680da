"""Home Assistant MQTT discovery payloads for one device (pure, sans-IO).

:func:`discovery_messages` maps a :class:`~bridge.model.Device` to retained discovery messages
``{config topic: JSON payload}``. Payloads use Home Assistant's documented abbreviations and are
serialised with sorted keys, so an unchanged device gives byte-identical payloads; the keys of the
dict are also the topics to clear (publish an empty retained payload) when the device goes away.
:func:`discovery_changes` computes what to publish between two generations.

Two layouts:

- **device-based** (default): one message ``<prefix>/device/<object_id>/config`` holding ``dev``,
  ``o``, the shared availability (``avty``, ``avty_mode``), ``qos`` and ``cmps`` (component id →
  component config with its platform ``p``);
- **per-entity**: one message per component ``<prefix>/<platform>/<object_id>/<component>/config``
  with the same component config plus ``dev``, ``o``, availability and ``qos``.

Entities point at the bridge's own topics: state topics are the trait topics
(``<base>/<device>/<endpointId>/<functionCode>/<traitCode>``) and commands go to their ``/set``
topics, with payloads the bridge's ``/set`` accepts (``true``/``false``, plain numbers, enum key
labels). Home Assistant checks a number's range but never its step, and the codec rejects an
off-grid value, so number, setpoint, brightness, colour temperature and position commands carry a
template (:func:`snap_template`) that sends the nearest value on the step grid instead; ``/set``
itself stays strict for every other client. The one exception is a light's hue/saturation, sent
as one JSON document to the device topic ``<base>/<device>/set`` so both reach the hub in one
call. A device's Connectivity sensor (``Reachable``) reads ``<base>/<device>/availability``,
which the bridge sets ``offline`` for an unreachable device and for a hub that is down (the
trait's retained value would go stale with the hub); only ``bridge/state`` makes it unavailable.

Mapping (only readable traits get a state topic, only writable ones a command topic; composites
are detected per endpoint first and the traits they use are not exposed again):

=============================================  ==========================================
trait(s)                                       Home Assistant entity
=============================================  ==========================================
Output.OnOff (Tuya ``switch_led``) +           ``light``: brightness (``bri_scl`` = level
LevelControl.CurrentLevel (``bright_value*``)  max, raised to the level min by template),
(+ ColorControl.ColorTemperature in mired or   colour temperature (``min_mirs``/``max_mirs``
kelvin, + Hue + Saturation); OnOff alone on a  or ``clr_temp_k``), hs (one JSON document to
``Light`` endpoint                             the device ``/set`` topic)
WindowCovering.TargetPositionPercentage /      ``cover``: ``set_pos_t`` + ``pos_t`` (current
Tuya ``percent_control``, ``control`` enum     position), open/close/stop via the
(+ current position, OperationalStatus /       open/close/stop enum, else max/min position
``work_state``)                                (no stop); ``stat_t`` from the status labels
Thermostat.SetTemperature + HeaterCoolerMode   ``climate``: modes mapped by template,
(+ FanMode, current temperature)               fan modes = enum labels
DoorLock.LockState writable / read-only        ``lock`` / ``binary_sensor`` (``lock``)
BOOLEAN writable+readable / write-only         ``switch`` / ``button``
BOOLEAN read-only                              ``binary_sensor``, class from the trait code
                                               (``Reachable``: the device's availability)
NUMBER writable / read-only                    ``number`` / ``sensor``, class from the unit
ENUM writable / read-only                      ``select`` / ``sensor`` (``dev_cla: enum``)
STRING writable / read-only                    ``text`` / ``sensor``
OTHER read-only                                ``sensor``, diagnostic, disabled by default
an event source (a button, a cube; no trait)   ``event`` (its ``event_types``) + one
                                               ``device_automation`` trigger per event type
=============================================  ==========================================

Aqara's ``ContactSensorState`` ``true`` means *closed* (contact made, as in Matter's
BooleanState); Home Assistant's ``door``/``window`` classes mean *open* when on, so that binary
sensor's ``pl_on`` is ``false``. Tuya's ``doorcontact_state`` ``true`` means open and is not
inverted. Traits of endpoint 0 (the root) are diagnostic (``config`` when writable). The measured
temperature of a thermostat stays a sensor too (long-term statistics).

Device-based discovery needs Home Assistant 2024.11 or later; use ``device_based=False`` for
older versions.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge import __version__
from bridge.codec import json_number, plain_number
from bridge.model import (
    Device,
    Endpoint,
    Trait,
    TraitAddress,
    TraitSpec,
    TraitType,
    event_action,
)
from bridge.outputs.announced import Components, Config, removable_components
from bridge.topics import TopicScheme

ORIGIN_NAME = "aqara-mqtt"
"""The ``o.name`` of every discovery payload."""

PLATFORMS = frozenset({
    "binary_sensor", "button", "climate", "cover", "device_automation", "event", "light", "lock",
    "number", "select", "sensor", "switch", "text",
})
"""The Home Assistant platforms this module produces."""

_OBJECT_ID = re.compile(r"[A-Za-z0-9_-]+")
_CANONICAL_ID = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
_STATE_MAX = 255  # Home Assistant's longest state string


# ---- options ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiscoveryOptions:
    """How discovery payloads are laid out.

    ``base_topic`` is only used when :func:`discovery_messages` gets no scheme. ``origin_url``
    becomes ``o.url`` when set. ``device_state_topic`` says whether the bridge publishes the
    device JSON document (``<base>/<device>``), which a colour light's hs state is read from.
    """

    prefix: str = "homeassistant"
    device_based: bool = True
    base_topic: str = "aqara"
    origin_version: str = __version__
    node_id: str = "aqara_mqtt"
    qos: int = 1
    origin_url: str | None = None
    manufacturer: str = "Aqara"
    device_state_topic: bool = True

    def __post_init__(self) -> None:
        prefix = self.prefix
        if (not prefix or prefix.startswith("/") or prefix.endswith("/") or "//" in prefix
                or any(c in prefix for c in "+#\x00")):
            raise ValueError(f"discovery prefix {prefix!r} must be levels without '+', '#'")
        if not _OBJECT_ID.fullmatch(self.node_id):
            raise ValueError(f"node id {self.node_id!r} may only contain A-Z a-z 0-9 _ -")
        if self.qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2 (got {self.qos!r})")


# ---- ids ----------------------------------------------------------------------------------------


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def safe_id(text: str) -> str:
    """``text`` as a Home Assistant object id (``[A-Za-z0-9_-]+``), deterministically.

    Ids made of letters, digits and ``-`` joined by single dots map 1:1 (``.`` → ``_``, e.g.
    ``lumi1.54ef448a0b73`` → ``lumi1_54ef448a0b73``); anything else becomes a slug plus ``__``
    and a hash of the original, which canonical ids never contain, so the two cannot collide.
    """
    if _CANONICAL_ID.fullmatch(text):
        return text.replace(".", "_")
    slug = re.sub(r"[^A-Za-z0-9-]+", "_", text).strip("_") or "x"
    return f"{slug}__{_digest(text)}"


def snake(code: str) -> str:
    """``OnOff`` → ``on_off``, ``PM2.5Density`` → ``pm2_5_density`` (lossy, for readable ids)."""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", code)
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "x"


def device_object_id(device_id: str, options: DiscoveryOptions) -> str:
    """The device's object id, also its ``dev.ids`` entry: ``<node_id>_<safe device id>``."""
    return f"{options.node_id}_{safe_id(device_id)}"


# ---- units and classes --------------------------------------------------------------------------

_UNIT_ALIASES = {
    "℃": "°C", "℉": "°F", "C": "°C", "F": "°F", "lux": "lx", "Lux": "lx", "LUX": "lx",
    "kwh": "kWh", "KWh": "kWh", "KWH": "kWh", "wh": "Wh", "w": "W", "kw": "kW", "KW": "kW",
    "v": "V", "a": "A", "ma": "mA", "hpa": "hPa", "kpa": "kPa", "PPM": "ppm", "PPB": "ppb",
    "ug/m3": "µg/m³", "ug/m³": "µg/m³", "µg/m3": "µg/m³", "μg/m3": "µg/m³",
}

DEVICE_CLASS_UNITS: dict[str, frozenset[str]] = {
    "temperature": frozenset({"°C", "°F", "K"}),
    "humidity": frozenset({"%"}),
    "battery": frozenset({"%"}),
    "illuminance": frozenset({"lx"}),
    "pressure": frozenset({"Pa", "hPa", "kPa", "bar", "cbar", "mbar", "mmHg", "inHg", "psi"}),
    "power": frozenset({"W", "kW"}),
    "voltage": frozenset({"V", "mV"}),
    "current": frozenset({"A", "mA"}),
    "energy": frozenset({"Wh", "kWh", "MWh"}),
    "carbon_dioxide": frozenset({"ppm"}),
    "carbon_monoxide": frozenset({"ppm"}),
    "pm1": frozenset({"µg/m³", "μg/m³"}),
    "pm25": frozenset({"µg/m³", "μg/m³"}),
    "pm10": frozenset({"µg/m³", "μg/m³"}),
    "volatile_organic_compounds": frozenset({"µg/m³", "μg/m³"}),
    "volatile_organic_compounds_parts": frozenset({"ppm", "ppb"}),
    "frequency": frozenset({"Hz", "kHz", "MHz", "GHz"}),
    "signal_strength": frozenset({"dB", "dBm"}),
    "duration": frozenset({"d", "h", "min", "s", "ms"}),
}
"""The sensor/number device classes produced, with the units Home Assistant accepts for each
(both micro signs: Home Assistant maps U+00B5 to U+03BC)."""


def normalize_unit(unit: str | None) -> str | None:
    """The spec's unit as Home Assistant spells it (``℃`` → ``°C``, ``lux`` → ``lx``); None
    for no unit."""
    if unit is None or not unit.strip():
        return None
    unit = unit.strip()
    return _UNIT_ALIASES.get(unit, unit)


def _compact(*codes: str) -> str:
    return re.sub(r"[^a-z0-9]", "", "".join(codes).lower())


def numeric_device_class(function_code: str, trait_code: str, unit: str | None) -> str | None:
    """The sensor/number device class for a NUMBER trait from its unit and codes, or None."""
    unit = normalize_unit(unit)
    if unit is None:
        return None
    text = _compact(function_code, trait_code)
    trait = trait_code.lower()
    cls: str | None = None
    if unit in DEVICE_CLASS_UNITS["temperature"]:
        cls = "temperature"
    elif unit == "%":
        if "humid" in text:
            cls = "humidity"
        elif trait.startswith("bat") or "battery" in text:
            cls = "battery"
    elif unit == "lx":
        cls = "illuminance"
    elif unit in DEVICE_CLASS_UNITS["pressure"]:
        cls = "pressure"
    elif unit in DEVICE_CLASS_UNITS["power"]:
        cls = "power"
    elif unit in DEVICE_CLASS_UNITS["voltage"]:
        cls = "voltage"
    elif unit in DEVICE_CLASS_UNITS["current"]:
        cls = "current"
    elif unit in DEVICE_CLASS_UNITS["energy"]:
        cls = "energy"
    elif unit == "ppm" or unit == "ppb":
        if "voc" in text:
            cls = "volatile_organic_compounds_parts"
        elif unit == "ppm" and "co2" in text:
            cls = "carbon_dioxide"
        elif unit == "ppm" and re.search(r"CO(?![0-9a-z])", trait_code):
            cls = "carbon_monoxide"
    elif unit in DEVICE_CLASS_UNITS["pm25"]:
        if "pm25" in text:
            cls = "pm25"
        elif "pm10" in text:
            cls = "pm10"
        elif "pm1" in text:
            cls = "pm1"
        elif "voc" in text:
            cls = "volatile_organic_compounds"
    elif unit in DEVICE_CLASS_UNITS["frequency"]:
        cls = "frequency"
    elif unit in DEVICE_CLASS_UNITS["signal_strength"] and ("rssi" in text or "signal" in text):
        cls = "signal_strength"
    elif unit in DEVICE_CLASS_UNITS["duration"]:
        cls = "duration"
    if cls is not None and unit not in DEVICE_CLASS_UNITS[cls]:
        return None
    return cls


def state_class(device_class: str | None) -> str:
    """``total_increasing`` for energy (cumulative; a drop counts as a reset), else
    ``measurement``."""
    return "total_increasing" if device_class == "energy" else "measurement"


_WINDOW_WORDS = ("window",)


@dataclass(frozen=True, slots=True)
class BinaryClass:
    """How a read-only boolean is shown: its class, whether ``true`` means *off*, diagnostic."""

    device_class: str | None
    inverted: bool = False
    diagnostic: bool = False


_BINARY_RULES: tuple[tuple[tuple[str, ...], BinaryClass], ...] = (
    (("doorcontact",), BinaryClass("door")),  # Tuya: true = open
    (("contact",), BinaryClass("door", inverted=True)),  # Aqara/Matter: true = contact = closed
    (("occupancy", "occupied", "presence"), BinaryClass("occupancy")),
    (("motion",), BinaryClass("motion")),
    (("leak", "water", "flood"), BinaryClass("moisture")),
    (("smoke",), BinaryClass("smoke")),
    (("codetected", "costate", "coalarm", "carbonmonoxide"), BinaryClass("carbon_monoxide")),
    (("gas",), BinaryClass("gas")),
    (("batreplacement", "batterylow", "lowbattery", "batlow"),
     BinaryClass("battery", diagnostic=True)),
    (("reachable", "online", "connected"), BinaryClass("connectivity", diagnostic=True)),
    (("tamper",), BinaryClass("tamper")),
    (("vibration",), BinaryClass("vibration")),
    (("fault", "problem", "alarm"), BinaryClass("problem")),
)

_BOOLEAN_STATE_TYPES: dict[str, BinaryClass] = {
    "contactsensor": BinaryClass("door", inverted=True),
    "waterleakdetector": BinaryClass("moisture"),
    "rainsensor": BinaryClass("moisture"),
    "occupancysensor": BinaryClass("occupancy"),
}


def binary_class(trait_code: str, endpoint_types: tuple[str, ...] = (),
                 device_name: str = "") -> BinaryClass:
    """The binary_sensor class of a read-only BOOLEAN trait (by trait code, then endpoint type).

    Contact traits are ``window`` when the device name or endpoint type says window, else
    ``door``; Aqara's ``ContactSensorState`` is inverted (``true`` = closed), Tuya's
    ``doorcontact_state`` is not (``true`` = open).
    """
    code = _compact(trait_code)
    found: BinaryClass | None = None
    for words, cls in _BINARY_RULES:
        if any(word in code for word in words):
            found = cls
            break
    if found is None:
        for endpoint_type in endpoint_types:
            found = _BOOLEAN_STATE_TYPES.get(_compact(endpoint_type))
            if found is not None:
                break
    if found is None:
        return BinaryClass(None)
    if found.device_class == "door":
        context = (device_name + " " + " ".join(endpoint_types)).lower()
        if any(word in context for word in _WINDOW_WORDS):
            return BinaryClass("window", inverted=found.inverted)
    return found


# ---- names --------------------------------------------------------------------------------------

TRAIT_LABELS: dict[str, str] = {
    "OnOff": "Power",
    "CurrentLevel": "Level",
    "ColorTemperature": "Color temperature",
    "CurrentTemperature": "Temperature",
    "LocalTemperature": "Temperature",
    "SetTemperature": "Target temperature",
    "CurrentHumidity": "Humidity",
    "CurrentPressure": "Pressure",
    "CurrentIlluminance": "Illuminance",
    "CurrentVoltage": "Voltage",
    "CurrentPower": "Power",
    "CumulativeEnergyConsumption": "Energy",
    "CircuitCurrent": "Current",
    "BatPercentRemaining": "Battery",
    "BatReplacementNeeded": "Battery low",
    "FirmwareRevision": "Firmware",
    "Reachable": "Connectivity",
    "ContactSensorState": "Contact",
    "LeakState": "Leak",
    "SmokeDetected": "Smoke",
    "SelfTestRequested": "Self test",
    "CO2Density": "CO2",
    "PM2.5Density": "PM2.5",
    "PM10Density": "PM10",
    "VOCDensity": "VOC",
    "AirQualityLevel": "Air quality",
    "CurrentPlaybackState": "Playback state",
    "HeaterCoolerMode": "Mode",
    "TargetPositionPercentage": "Position",
    "CurrentPositionPercentage": "Current position",
    "OperationalStatus": "Status",
}
"""Entity names for well-known trait codes; others are humanised (``FanMode`` → ``Fan mode``)."""


def humanize(code: str) -> str:
    """``HeaterCoolerMode`` → ``Heater cooler mode``, ``CO2Density`` → ``CO2 density``."""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", code)
    words = [w for w in re.split(r"[\s_]+", text) if w]
    if not words:
        return code or "Value"
    out = [words[0][:1].upper() + words[0][1:]]
    out += [w if w.isupper() or any(c.isdigit() for c in w) else w.lower() for w in words[1:]]
    return " ".join(out)


def trait_label(trait_code: str) -> str:
    """The entity name of a trait before endpoint suffixes."""
    return TRAIT_LABELS.get(trait_code) or humanize(trait_code)


def ends_with_words(name: str, label: str) -> bool:
    """Whether ``name`` ends with the words of ``label`` (case-insensitive), as "Washing
    Machine Leak" ends with "Leak": Home Assistant shows an entity as the device's name and
    its own, so such a label would be said twice."""
    words, tail = name.casefold().split(), label.casefold().split()
    return bool(tail) and words[-len(tail):] == tail


_POSITION_WORDS = ("left", "right", "center", "centre", "middle", "top", "bottom", "upper",
                   "lower", "inner", "outer")


def _position_word(endpoint: Endpoint) -> str | None:
    for endpoint_type in endpoint.types:
        lowered = endpoint_type.lower()
        for word in _POSITION_WORDS:
            if word in lowered:
                return word.capitalize()
    return None


# ---- JSON and templates -------------------------------------------------------------------------


def dumps(document: Any) -> str:
    """Compact, key-sorted JSON (byte-identical for equal documents)."""
    return json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False,
                      allow_nan=False)


def _jinja_str(text: str) -> str:
    """A Jinja string literal for ``text`` (delimiter characters escaped so they never end an
    expression)."""
    out = []
    for char in text:
        if char in "\\'{}%#" or ord(char) < 0x20:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return "'" + "".join(out) + "'"


def _jinja_map(mapping: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{_jinja_str(k)}: {_jinja_str(v)}" for k, v in mapping.items()) + "}"


def _num(value: float | None) -> int | float | None:
    return None if value is None else json_number(value)


_PLAIN_CODE = re.compile(r"[A-Za-z0-9_.-]+")


# ---- building -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Component:
    key: str
    platform: str
    config: dict[str, Any]
    endpoint_id: int
    label: str
    primary: bool = False
    name: str | None = field(default=None)


class _Builder:
    """Collects the components of one device."""

    def __init__(self, device: Device, topic_name: str, scheme: TopicScheme,
                 options: DiscoveryOptions) -> None:
        self.device = device
        self.topic_name = topic_name
        self.scheme = scheme
        self.options = options
        self.components: list[_Component] = []
        self.used: set[TraitAddress] = set()

    # ---- topics ----

    def address(self, endpoint_id: int, function_code: str, trait_code: str) -> TraitAddress:
        return TraitAddress(self.device.id, endpoint_id, function_code, trait_code)

    def state(self, address: TraitAddress) -> str:
        return self.scheme.trait(self.topic_name, address)

    def command(self, address: TraitAddress) -> str:
        return self.scheme.trait(self.topic_name, address) + "/set"

    def device_set(self) -> str:
        return self.scheme.device(self.topic_name) + "/set"

    # ---- lookup ----

    def find(self, endpoint: Endpoint, functions: tuple[str, ...], traits: tuple[str, ...],
             kind: TraitType, *, writable: bool | None = None, readable: bool | None = None,
             ) -> tuple[TraitAddress, Trait] | None:
        """The first unused trait of that kind at one of those function/trait codes."""
        for function_code in functions:
            function = endpoint.functions.get(function_code)
            if function is None:
                continue
            for trait_code in traits:
                trait = function.traits.get(trait_code)
                if trait is None or trait.spec.type is not kind:
                    continue
                if writable is not None and trait.spec.writable != writable:
                    continue
                if readable is not None and trait.spec.readable != readable:
                    continue
                address = self.address(endpoint.id, function_code, trait_code)
                if address in self.used:
                    continue
                return address, trait
        return None

    def add(self, key: str, platform: str, config: dict[str, Any], endpoint_id: int,
            label: str, used: tuple[TraitAddress, ...], primary: bool = False) -> None:
        self.used.update(used)
        self.components.append(_Component(key, platform, config, endpoint_id, label, primary))

    # ---- composites ----

    def light(self, endpoint: Endpoint) -> None:
        onoff = self.find(endpoint, ("Output", "OnOff", "light"), ("OnOff", "switch_led"),
                          TraitType.BOOLEAN, writable=True)
        if onoff is None:
            return
        level = self.find(endpoint, ("LevelControl", "light"),
                          ("CurrentLevel", "bright_value_v2", "bright_value"), TraitType.NUMBER,
                          writable=True)
        ct = self.find(endpoint, ("ColorControl",), ("ColorTemperature",), TraitType.NUMBER,
                       writable=True)
        if ct is not None and _color_temp_unit(ct[1].spec) is None:
            ct = None  # not in mired or kelvin (e.g. a 0..1000 warm/cold scale): a number
        hue = self.find(endpoint, ("ColorControl",), ("Hue", "CurrentHue"), TraitType.NUMBER,
                        writable=True)
        sat = self.find(endpoint, ("ColorControl",), ("Saturation", "CurrentSaturation"),
                        TraitType.NUMBER, writable=True)
        is_light_type = onoff[0].trait_code == "switch_led" or any(
            word in t.lower() for t in endpoint.types
            for word in ("light", "lamp", "bulb", "dimmer"))
        if level is None and ct is None and (hue is None or sat is None) and not is_light_type:
            return
        used = [onoff[0]]
        config: dict[str, Any] = {"cmd_t": self.command(onoff[0]), "pl_on": "true",
                                  "pl_off": "false"}
        if onoff[1].spec.readable:
            config["stat_t"] = self.state(onoff[0])
        if level is not None:
            spec = level[1].spec
            used.append(level[0])
            config["bri_cmd_t"] = self.command(level[0])
            config["bri_scl"] = int(spec.max) if spec.max and spec.max >= 1 else 100
            template = snap_template(spec, integers=True, lowest=1)  # HA sends 1..bri_scl
            if template is not None:
                config["bri_cmd_tpl"] = template
            if spec.readable:
                config["bri_stat_t"] = self.state(level[0])
        if ct is not None:
            used.append(ct[0])
            self._color_temp(config, ct)
        if hue is not None and sat is not None:
            hs = self._hs(hue, sat)
            if hs:
                used += [hue[0], sat[0]]
                config.update(hs)
        self.add(f"ep{endpoint.id}_light", "light", config, endpoint.id, "Light", tuple(used),
                 primary=True)

    def _color_temp(self, config: dict[str, Any], ct: tuple[TraitAddress, Trait]) -> None:
        spec = ct[1].spec
        kelvin = _color_temp_unit(spec) == "K"
        config["clr_temp_cmd_t"] = self.command(ct[0])
        template = snap_template(spec, integers=True, in_range=False)  # HA does not clamp it
        if template is not None:
            config["clr_temp_cmd_tpl"] = template
        if spec.readable:
            config["clr_temp_stat_t"] = self.state(ct[0])
        low, high = ("min_k", "max_k") if kelvin else ("min_mirs", "max_mirs")
        if kelvin:
            config["clr_temp_k"] = True
        if spec.min is not None:
            config[low] = int(spec.min)
        if spec.max is not None:
            config[high] = int(spec.max)

    def _hs(self, hue: tuple[TraitAddress, Trait], sat: tuple[TraitAddress, Trait],
            ) -> dict[str, Any]:
        """hs command (one JSON document to the device /set topic) and state (from the device
        JSON document); empty when the codes cannot be written into a template safely."""
        addresses = (hue[0], sat[0])
        if not all(_PLAIN_CODE.fullmatch(a.function_code) and _PLAIN_CODE.fullmatch(a.trait_code)
                   for a in addresses):
            return {}

        def scale(spec: TraitSpec, full: float) -> float:
            return (spec.max or full) / full

        def command_expr(var: str, spec: TraitSpec, full: float) -> str:
            factor = scale(spec, full)
            expr = var if factor == 1 else f"({var} * {plain_number(factor)})"
            return f"{{{{ {expr} | round | int }}}}" if spec.is_integer else \
                f"{{{{ {expr} | round(2) }}}}"

        ep = str(hue[0].endpoint_id)
        document: dict[str, dict[str, dict[str, str]]] = {ep: {}}
        document[ep].setdefault(hue[0].function_code, {})[hue[0].trait_code] = "@H@"
        document.setdefault(str(sat[0].endpoint_id), {}).setdefault(
            sat[0].function_code, {})[sat[0].trait_code] = "@S@"
        text = json.dumps(document, separators=(",", ":"), ensure_ascii=True)
        text = text.replace('"@H@"', command_expr("hue", hue[1].spec, 360.0))
        text = text.replace('"@S@"', command_expr("sat", sat[1].spec, 100.0))
        result: dict[str, Any] = {"hs_cmd_t": self.device_set(), "hs_cmd_tpl": text}
        if self.options.device_state_topic and hue[1].spec.readable and sat[1].spec.readable:
            def state_expr(address: TraitAddress, spec: TraitSpec, full: float) -> str:
                path = "".join(f"[{_jinja_str(part)}]" for part in (
                    str(address.endpoint_id), address.function_code, address.trait_code))
                factor = scale(spec, full)
                expr = f"value_json{path}"
                if factor != 1:
                    expr = f"({expr} / {plain_number(factor)}) | round(2)"
                return f"{{{{ {expr} }}}}"

            result["hs_stat_t"] = self.scheme.device(self.topic_name)
            result["hs_val_tpl"] = (state_expr(hue[0], hue[1].spec, 360.0) + ","
                                    + state_expr(sat[0], sat[1].spec, 100.0))
        return result

    def cover(self, endpoint: Endpoint) -> None:
        functions = ("WindowCovering", "cover")
        target = self.find(endpoint, functions,
                           ("TargetPositionPercentage", "TargetPosition", "percent_control"),
                           TraitType.NUMBER, writable=True)
        command = self._cover_command(endpoint, functions)
        if target is None and command is None:
            return
        used: list[TraitAddress] = []
        config: dict[str, Any] = {}
        opened: int | float | None = 100
        closed: int | float | None = 0
        if target is not None:
            spec = target[1].spec
            opened = _num(spec.max if spec.max is not None else 100)
            closed = _num(spec.min if spec.min is not None else 0)
            used.append(target[0])
            current = self.find(endpoint, functions, (
                "CurrentPositionPercentage", "CurrentPosition", "percent_state"),
                TraitType.NUMBER, readable=True)
            position = current or (target if spec.readable else None)
            if position is not None:  # set_position_topic needs a position_topic
                used.append(position[0])
                config["set_pos_t"] = self.command(target[0])
                config["pos_t"] = self.state(position[0])
                template = snap_template(spec, integers=True)  # HA rounds the position
                if template is not None:
                    config["set_pos_tpl"] = template
            if opened != 100:
                config["pos_open"] = opened
            if closed != 0:
                config["pos_clsd"] = closed
        stop = None if command is not None else self._cover_stop(endpoint)
        if command is not None:  # an open/close/stop enum (e.g. Tuya's control)
            address, labels = command
            used.append(address)
            config.update({"cmd_t": self.command(address), "pl_open": labels["open"],
                           "pl_cls": labels["close"], "pl_stop": labels.get("stop")})
        elif target is not None and stop is None:
            config.update({"cmd_t": self.command(target[0]), "pl_open": plain_number(opened or 0),
                           "pl_cls": plain_number(closed or 0), "pl_stop": None})
        elif target is not None and stop is not None:
            used.append(stop[0])

            def doc(address: TraitAddress, value: Any) -> str:
                return dumps({str(address.endpoint_id): {
                    address.function_code: {address.trait_code: value}}})

            config.update({"cmd_t": self.device_set(), "pl_open": doc(target[0], opened),
                           "pl_cls": doc(target[0], closed), "pl_stop": doc(stop[0], stop[1])})
        status = self.find(endpoint, functions, ("OperationalStatus", "MovingStatus",
                                                 "work_state"), TraitType.ENUM, readable=True)
        if status is not None:
            labels = {option.key.casefold(): option.key for option in status[1].spec.enums}
            states = {key: labels[word] for key, words in (
                ("stat_opening", ("opening",)), ("stat_closing", ("closing",)),
                ("stat_stopped", ("stopped", "stop", "idle")), ("stat_open", ("open", "opened")),
                ("stat_clsd", ("closed",))) for word in words if word in labels}
            if "stat_opening" in states and "stat_closing" in states:
                used.append(status[0])
                config["stat_t"] = self.state(status[0])
                config.update(states)
        context = " ".join((self.device.model, self.device.name, *endpoint.types,
                            *self.device.types)).lower()
        for word, cls in (("curtain", "curtain"), ("blind", "blind"), ("shade", "shade"),
                          ("shutter", "shutter"), ("awning", "awning"), ("garage", "garage")):
            if word in context:
                config["dev_cla"] = cls
                break
        label = "Curtain" if config.get("dev_cla") == "curtain" else "Cover"
        self.add(f"ep{endpoint.id}_cover", "cover", config, endpoint.id, label, tuple(used),
                 primary=True)

    def _cover_command(self, endpoint: Endpoint, functions: tuple[str, ...],
                       ) -> tuple[TraitAddress, dict[str, str]] | None:
        """A writable enum with open and close options (and maybe stop), with those labels."""
        for function_code in functions:
            function = endpoint.functions.get(function_code)
            if function is None:
                continue
            for trait in function.traits.values():
                spec = trait.spec
                if spec.type is not TraitType.ENUM or not spec.writable:
                    continue
                labels = {option.key.casefold(): option.key for option in spec.enums}
                if "open" in labels and "close" in labels:
                    address = self.address(endpoint.id, function_code, trait.code)
                    if address not in self.used:
                        return address, {word: labels[word] for word in ("open", "close", "stop")
                                         if word in labels}
        return None

    def _cover_stop(self, endpoint: Endpoint) -> tuple[TraitAddress, str] | None:
        function = endpoint.functions.get("WindowCovering")
        if function is None:
            return None
        for trait in function.traits.values():
            if trait.spec.type is TraitType.ENUM and trait.spec.writable:
                for option in trait.spec.enums:
                    if option.key.casefold() in ("stop", "stopped"):
                        return self.address(endpoint.id, function.code, trait.code), option.key
        return None

    def climate(self, endpoint: Endpoint) -> None:
        setpoint = self.find(endpoint, ("Thermostat",),
                             ("SetTemperature", "TargetTemperature", "OccupiedHeatingSetpoint"),
                             TraitType.NUMBER, writable=True)
        mode = self.find(endpoint, ("Thermostat",), ("HeaterCoolerMode", "SystemMode", "Mode"),
                         TraitType.ENUM, writable=True)
        if setpoint is None or mode is None:
            return
        to_ha: dict[str, str] = {}
        for option in mode[1].spec.enums:
            ha_mode = CLIMATE_MODE_WORDS.get(_compact(option.key))
            if ha_mode is not None and ha_mode not in to_ha.values():
                to_ha[option.key] = ha_mode
        if not to_ha:
            return
        spec = setpoint[1].spec
        used = [setpoint[0], mode[0]]
        config: dict[str, Any] = {"temp_cmd_t": self.command(setpoint[0])}
        template = snap_template(spec)
        if template is not None:
            config["temp_cmd_tpl"] = template
        if spec.readable:
            config["temp_stat_t"] = self.state(setpoint[0])
        if spec.min is not None:
            config["min_temp"] = _num(spec.min)
        grid = _grid(spec)
        top = grid.high if grid is not None and grid.high is not None else spec.max
        if top is not None:
            config["max_temp"] = _num(top)
        if spec.step:
            config["temp_step"] = _num(spec.step)
            if float(spec.step) in (0.1, 0.5, 1.0):
                config["precision"] = float(spec.step)
        unit = normalize_unit(spec.unit)
        if unit in ("°C", "°F"):
            config["temp_unit"] = unit[-1]
        config["modes"] = list(to_ha.values())
        config["mode_cmd_t"] = self.command(mode[0])
        from_ha = {ha: label for label, ha in to_ha.items()}
        config["mode_cmd_tpl"] = f"{{{{ {_jinja_map(from_ha)}[value] }}}}"
        if mode[1].spec.readable:
            config["mode_stat_t"] = self.state(mode[0])
            config["mode_stat_tpl"] = f"{{{{ {_jinja_map(to_ha)}.get(value, value) }}}}"
        current = self.find(endpoint, ("TemperatureMeasurement", "Thermostat"),
                            ("CurrentTemperature", "LocalTemperature"), TraitType.NUMBER,
                            readable=True)
        if current is not None:  # also stays a temperature sensor (long-term statistics)
            config["curr_temp_t"] = self.state(current[0])
        fan = self.find(endpoint, ("Thermostat", "FanControl"), ("FanMode",), TraitType.ENUM,
                        writable=True)
        if fan is not None and fan[1].spec.enums:
            used.append(fan[0])
            config["fan_mode_cmd_t"] = self.command(fan[0])
            if fan[1].spec.readable:
                config["fan_mode_stat_t"] = self.state(fan[0])
            config["fan_modes"] = _unique(option.key for option in fan[1].spec.enums)
        self.add(f"ep{endpoint.id}_climate", "climate", config, endpoint.id, "Thermostat",
                 tuple(used), primary=True)

    def lock(self, endpoint: Endpoint) -> None:
        found = self.find(endpoint, ("DoorLock",), ("LockState",), TraitType.ENUM)
        if found is None:
            return
        address, trait = found
        labels = {option.key.casefold(): option.key for option in trait.spec.enums}
        locked, unlocked = labels.get("locked"), labels.get("unlocked")
        if locked is None or unlocked is None:
            return
        if trait.spec.writable:
            config: dict[str, Any] = {"cmd_t": self.command(address), "pl_lock": locked,
                                      "pl_unlk": unlocked}
            if trait.spec.readable:
                config.update({"stat_t": self.state(address), "stat_locked": locked,
                               "stat_unlocked": unlocked})
                for key, word in (("stat_jam", "jammed"), ("stat_locking", "locking"),
                                  ("stat_unlocking", "unlocking"), ("stat_open", "unlatched")):
                    if word in labels:
                        config[key] = labels[word]
                partly = labels.get("notfullylocked")
                if partly is not None:  # not fully locked is not locked, and not jammed
                    config["val_tpl"] = (f"{{{{ {_jinja_str(unlocked)} if value == "
                                         f"{_jinja_str(partly)} else value }}}}")
            self.add(f"ep{endpoint.id}_lock", "lock", config, endpoint.id, "Lock", (address,),
                     primary=True)
        elif trait.spec.readable:  # lock class: on = unlocked (anything but fully locked)
            config = {"stat_t": self.state(address), "dev_cla": "lock",
                      "val_tpl": f"{{{{ 'OFF' if value == {_jinja_str(locked)} else 'ON' }}}}"}
            self.add(f"ep{endpoint.id}_lock", "binary_sensor", config, endpoint.id, "Lock",
                     (address,), primary=True)

    # ---- single traits ----

    def single(self, endpoint: Endpoint, function_code: str, trait: Trait) -> None:
        address = self.address(endpoint.id, function_code, trait.code)
        if address in self.used or function_code in _SKIPPED_FUNCTIONS:
            return
        spec = trait.spec
        if not (spec.readable or spec.writable):
            return
        key = f"ep{endpoint.id}_{snake(function_code)}_{snake(trait.code)}"
        label = trait_label(trait.code)
        kind = spec.type
        config: dict[str, Any] = {}
        if spec.readable:
            config["stat_t"] = self.state(address)
        if spec.writable:
            config["cmd_t"] = self.command(address)
        platform: str
        diagnostic = endpoint.id == 0
        primary = False
        if kind is TraitType.BOOLEAN:
            if spec.writable and spec.readable:
                platform = "switch"
                config.update({"pl_on": "true", "pl_off": "false", "stat_on": "true",
                               "stat_off": "false"})
                if _PRIMARY_SWITCH.fullmatch(trait.code):
                    primary = True
                    if trait.code in ("OnOff", "switch"):
                        label = _onoff_label(endpoint)
            elif spec.writable:
                platform = "button"
                config["pl_prs"] = "true"
            else:
                platform = "binary_sensor"
                cls = binary_class(trait.code, endpoint.types, self.device.name)
                config.update({"pl_on": "false" if cls.inverted else "true",
                               "pl_off": "true" if cls.inverted else "false"})
                if cls.device_class:
                    config["dev_cla"] = cls.device_class
                if trait.code in REACHABILITY_CODES:
                    config.update(self._reachability())
                diagnostic = diagnostic or cls.diagnostic
        elif kind is TraitType.NUMBER:
            unit = normalize_unit(spec.unit)
            cls_name = numeric_device_class(function_code, trait.code, spec.unit)
            if unit:
                config["unit_of_meas"] = unit
            if cls_name:
                config["dev_cla"] = cls_name
            if spec.writable:
                platform = "number"
                config.update(_number_limits(spec))
                template = snap_template(spec)
                if template is not None:
                    config["cmd_tpl"] = template
            else:
                platform = "sensor"
                config["stat_cla"] = state_class(cls_name)
            diagnostic = diagnostic or cls_name == "battery"
        elif kind is TraitType.ENUM:
            labels = _unique(option.key for option in spec.enums)
            if spec.writable:
                if labels:
                    platform = "select"
                    config["ops"] = labels
                else:
                    platform = "text"
                    config.update({"min": 0, "max": _STATE_MAX})
            else:
                platform = "sensor"
                if labels:
                    config.update({"dev_cla": "enum", "ops": labels})
        elif kind is TraitType.STRING:
            if spec.writable:
                platform = "text"
                config.update({"min": 0, "max": _STATE_MAX})
            else:
                platform = "sensor"
        else:  # OTHER: a diagnostic summary, off by default; objects also as attributes
            if not spec.readable:
                return
            config.pop("cmd_t", None)
            platform = "sensor"
            config["val_tpl"] = f"{{{{ value[:{_STATE_MAX}] }}}}"
            config["en"] = False
            if "array" not in spec.format.lower() and not isinstance(trait.value, list):
                config["json_attr_t"] = config["stat_t"]
            diagnostic = True
        if diagnostic or trait.code in _DIAGNOSTIC_CODES:
            config["ent_cat"] = "config" if spec.writable and platform not in (
                "sensor", "binary_sensor") else "diagnostic"
        self.add(key, platform, config, endpoint.id, label, (address,), primary=primary)

    def _reachability(self) -> dict[str, Any]:
        """The Connectivity sensor reads the device's availability, which the bridge sets
        ``offline`` when the device is unreachable *or* its hub is not connected (the trait's
        own retained value goes stale with the hub); only ``bridge/state`` makes it unavailable,
        the one case in which nobody can tell."""
        return {"stat_t": self.scheme.availability(self.topic_name), "pl_on": "online",
                "pl_off": "offline", "avty": [{"t": self.scheme.bridge("state")}]}

    # ---- naming and assembly ----

    def finish(self) -> list[_Component]:
        """Unique component ids, names with endpoint suffixes where one label appears on several
        endpoints, and a null name (= the device's name) for the device's one main entity."""
        components = self.components
        seen: dict[str, int] = {}
        for component in components:
            seen[component.key] = seen.get(component.key, 0) + 1
        for component in components:
            if seen[component.key] > 1:
                component.key = f"{component.key}_{_digest(dumps(component.config))}"
        by_label: dict[str, set[int]] = {}
        for component in components:
            by_label.setdefault(component.label, set()).add(component.endpoint_id)
        device_name = self.device.name or ""
        for component in components:
            name = component.label
            endpoints = by_label[name]
            if len(endpoints) > 1:
                suffix, is_word = self._suffix(component.endpoint_id, endpoints)
                if is_word and component.primary:
                    name = suffix  # "Left"/"Right" alone for a double rocker's switches
                elif ends_with_words(device_name, name):
                    name = suffix  # "Wall Switch" + "2", never "Wall Switch Switch 2"
                else:
                    name = f"{name} {suffix}"
            component.name = name
        counts: dict[str, int] = {}
        for component in components:
            counts[component.name or ""] = counts.get(component.name or "", 0) + 1
        for component in components:
            if counts[component.name or ""] > 1:
                component.name = f"{component.name} ({component.key})"
        primaries = [c for c in components if c.primary]
        # else the one entity the device's name already names: "Washing Machine Leak" + "Leak"
        echoes = [c for c in components
                  if len(by_label[c.label]) == 1 and ends_with_words(device_name, c.label)]
        main = primaries if len(primaries) == 1 else echoes if not primaries else []
        if len(main) == 1:
            main[0].name = None
        return components

    def _suffix(self, endpoint_id: int, endpoint_ids: set[int]) -> tuple[str, bool]:
        """A position word from the endpoint types when every endpoint has a distinct one
        (``Left``/``Right``), else the endpoint's number among them (1, 2…, not its id, so a
        wall switch whose rockers are endpoints 2 and 3 has a 1 and a 2); and whether it is a
        word."""
        words: dict[int, str | None] = {}
        for other in endpoint_ids:
            endpoint = self.device.endpoints.get(other)
            words[other] = _position_word(endpoint) if endpoint is not None else None
        word = words.get(endpoint_id)
        if word and list(words.values()).count(word) == 1 and all(words.values()):
            return word, True
        return str(sorted(endpoint_ids).index(endpoint_id) + 1), False  # 1, 2… in endpoint order


CLIMATE_MODE_WORDS: dict[str, str] = {
    "off": "off", "heat": "heat", "heating": "heat", "cool": "cool", "cooling": "cool",
    "auto": "auto", "automatic": "auto", "dry": "dry", "dehumidify": "dry", "fan": "fan_only",
    "fanonly": "fan_only", "ventilation": "fan_only", "ventilate": "fan_only",
    "heatcool": "heat_cool",
}
"""Enum labels (lower case, letters and digits only) → Home Assistant HVAC modes."""

_SKIPPED_FUNCTIONS = frozenset({"Descriptor"})
REACHABILITY_CODES = frozenset({"Reachable"})
"""Trait codes of a device's own reachability: its Connectivity sensor shows the device's
availability topic instead of the trait (see :meth:`_Builder._reachability`)."""
_DIAGNOSTIC_CODES = frozenset({
    "FirmwareRevision", "Reachable", "BatPercentRemaining", "BatReplacementNeeded",
    "OccupancySensorType", "NetworkStatus",
})


def _color_temp_unit(spec: TraitSpec) -> str | None:
    """``mired`` or ``K`` for a colour temperature trait, None when it is neither (a relative
    warm/cold scale such as Tuya's 0..1000)."""
    unit = (spec.unit or "").strip().lower()
    if unit in ("mired", "mireds", "mirek"):
        return "mired"
    if unit in ("k", "kelvin"):
        return "K"
    if unit or spec.min is None or spec.max is None:
        return None
    if 100 <= spec.min < spec.max <= 1000:
        return "mired"
    if 1000 <= spec.min < spec.max <= 10000:
        return "K"
    return None


_PRIMARY_SWITCH = re.compile(r"OnOff|switch(?:_\d+)?")


def _onoff_label(endpoint: Endpoint) -> str:
    types = " ".join(endpoint.types).lower()
    if "outlet" in types or "plug" in types:
        return "Outlet"
    if "light" in types:
        return "Light"
    return "Switch"


def _unique(items: Any) -> list[str]:
    out: list[str] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


@dataclass(frozen=True, slots=True)
class _Grid:
    """The values a NUMBER trait's ``/set`` accepts, as the codec checks them: multiples of
    ``step`` counted from ``origin`` (the minimum, else 0), between ``low`` and ``high`` (the
    first and last of them within min/max; None when unbounded), with ``digits`` decimals."""

    origin: float
    step: float
    low: float | None
    high: float | None
    digits: int
    integer: bool


def _decimal_places(number: float) -> int:
    text = plain_number(number)
    return len(text.partition(".")[2])


def _grid(spec: TraitSpec) -> _Grid | None:
    """The spec's step grid, or None when it has no step (and takes fractions)."""
    step = spec.step if spec.step and spec.step > 0 and math.isfinite(spec.step) else (
        1 if spec.is_integer else None)
    if step is None:
        return None
    origin = spec.min if spec.min is not None and math.isfinite(spec.min) else 0
    digits = max(_decimal_places(step), _decimal_places(origin))
    high = None
    if spec.max is not None and math.isfinite(spec.max) and spec.max >= origin:
        high = round(origin + math.floor((spec.max - origin) / step + 1e-9) * step, digits)
    return _Grid(origin, step, origin if spec.min is not None else None, high, digits,
                 spec.is_integer)


def snap_template(spec: TraitSpec, *, integers: bool = False, lowest: float | None = None,
                  in_range: bool = True) -> str | None:
    """A command template that turns a number Home Assistant sends into the nearest value the
    bridge's ``/set`` takes: rounded to the step grid, kept within min/max (the codec rejects
    anything else, and Home Assistant checks the range of a number or setpoint but never its
    step). ``integers``: the sender only sends whole numbers; ``lowest``: the least it sends
    when that may be below the minimum; ``in_range=False``: it may send anything (a light's
    colour temperature). None when every value it can send is valid as is."""
    grid = _grid(spec)
    if grid is None:
        return None
    on_grid = integers and float(grid.step).is_integer() and float(grid.origin).is_integer()
    snap = not (on_grid and grid.step == 1)
    raise_low = grid.low is not None and (
        not in_range or (lowest is not None and lowest < grid.low))
    cap_high = grid.high is not None and (not in_range or (
        snap and spec.max is not None and grid.high < spec.max))
    if not (snap or raise_low or cap_high):
        return None
    expr = "value"
    if snap:
        units = _plus("value", -grid.origin)
        if grid.step != 1:
            units = f"({units}) / {plain_number(grid.step)}" if grid.origin else \
                f"{units} / {plain_number(grid.step)}"
        expr = f"({units}) | round" if units != "value" else "value | round"
        if grid.step != 1:
            expr = f"{expr} * {plain_number(grid.step)}"
        expr = _plus(expr, grid.origin)
    if cap_high:
        expr = f"[{expr}, {plain_number(grid.high or 0)}] | min"
    if raise_low:
        expr = f"[{expr}, {plain_number(grid.low or 0)}] | max"
    # Home Assistant's round gives an int at precision 0, Jinja's a float: fix the text
    if grid.integer or not grid.digits:
        return f"{{{{ ({expr}) | int }}}}"
    return f"{{{{ ({expr}) | round({grid.digits}) }}}}"


def _plus(expr: str, number: float) -> str:
    """``expr + number`` as Jinja (nothing for 0, a minus for a negative number)."""
    if not number:
        return expr
    return f"{expr} {'+' if number > 0 else '-'} {plain_number(abs(number))}"


def _number_limits(spec: TraitSpec) -> dict[str, Any]:
    """``min``/``max``/``step``/``mode`` for a number entity (Home Assistant needs min < max);
    ``max`` is the last value on the step grid."""
    unit = normalize_unit(spec.unit)
    grid = _grid(spec)
    low = spec.min if spec.min is not None else (0 if unit == "%" else -1_000_000)
    high = spec.max if spec.max is not None else (100 if unit == "%" else 1_000_000)
    if grid is not None and grid.high is not None and spec.max is not None:
        high = grid.high
    if high <= low:
        high = low + 1
    step = spec.step if spec.step and spec.step > 0 else (1 if spec.is_integer else 0.01)
    known = spec.min is not None and spec.max is not None
    mode = "slider" if known and (high - low) / step <= 1000 else "box"
    return {"min": _num(low), "max": _num(high), "step": _num(step), "mode": mode}


def is_hub(device: Device) -> bool:
    """Whether the device is a hub (gateway) that other devices reach Home Assistant through."""
    text = " ".join((device.model, *device.types)).lower()
    return "gateway" in text or "hub" in device.types


def _firmware(device: Device) -> str | None:
    for endpoint_id in sorted(device.endpoints):
        trait = device.trait(endpoint_id, "BasicInformation", "FirmwareRevision")
        if trait is not None and isinstance(trait.value, str) and trait.value:
            return trait.value
    return None


def _device_block(device: Device, options: DiscoveryOptions,
                  via: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"ids": [device_object_id(device.id, options)],
                             "name": device.name or device.id}
    if via is not None and via != device.id:
        block["via_device"] = device_object_id(via, options)
    manufacturer = device.extra.get("manufacturer")
    block["mf"] = manufacturer if isinstance(manufacturer, str) and manufacturer else \
        options.manufacturer
    if device.model:
        block["mdl"] = device.model
    firmware = _firmware(device)
    if firmware:
        block["sw"] = firmware
    room = device.extra.get("room")
    if isinstance(room, str) and room:
        block["sa"] = room
    return block


def _origin(options: DiscoveryOptions) -> dict[str, Any]:
    origin: dict[str, Any] = {"name": ORIGIN_NAME, "sw": options.origin_version}
    if options.origin_url:
        origin["url"] = options.origin_url
    return origin


def components(device: Device, topic_name: str, scheme: TopicScheme,
               options: DiscoveryOptions) -> dict[str, dict[str, Any]]:
    """Component id → component config (with ``p``, ``uniq_id`` and ``name``) for ``device``.

    Composites are detected first on each endpoint (light, cover, climate, lock); the remaining
    traits map one to one (see the module docstring).
    """
    builder = _Builder(device, topic_name, scheme, options)
    endpoints = [device.endpoints[key] for key in sorted(device.endpoints)]
    for endpoint in endpoints:
        builder.light(endpoint)
        builder.cover(endpoint)
        builder.climate(endpoint)
        builder.lock(endpoint)
    for endpoint in endpoints:
        for function in endpoint.functions.values():
            for trait in function.traits.values():
                builder.single(endpoint, function.code, trait)
    object_id = device_object_id(device.id, options)
    result: dict[str, dict[str, Any]] = {}
    for component in builder.finish():
        config = {"p": component.platform, "uniq_id": f"{object_id}_{component.key}",
                  "name": component.name, **component.config}
        result[component.key] = config
    result.update(_event_components(device, scheme.event(topic_name), object_id))
    return result


TRIGGER_TYPES = {
    "single": "button_short_press", "double": "button_double_press",
    "triple": "button_triple_press", "quadruple": "button_quadruple_press",
    "quintuple": "button_quintuple_press", "hold": "button_long_press",
    "release": "button_long_release",
}
"""Event types → the device trigger types Home Assistant's frontend words ("double clicked");
other events (a cube's ``shake``) keep their own name as the type."""


def _event_components(device: Device, topic: str, object_id: str) -> dict[str, dict[str, Any]]:
    """Per event source: one ``event`` entity (its ``event_types``) and one device trigger per
    event type (subtype ``button_<n>``), all on the device's ``event`` topic. The entity takes
    only its own button's messages (the template renders the others empty, which Home Assistant
    ignores); a trigger fires when the message's ``action`` is its payload."""
    result: dict[str, dict[str, Any]] = {}
    several = len(device.events) > 1
    for source in device.events:
        button = safe_id(source.button)
        presses = all(kind in TRIGGER_TYPES for kind in source.event_types)
        entity: dict[str, Any] = {
            "p": "event", "uniq_id": f"{object_id}_event_{button}",
            "name": f"Button {source.button}" if several else "Action",
            "stat_t": topic, "evt_typ": list(source.event_types),
            "val_tpl": f"{{{{ value if value_json.button == {_jinja_str(source.button)} "
                       f"else '' }}}}",
        }
        if presses:
            entity["dev_cla"] = "button"
        result[f"event_{button}"] = entity
        for kind in source.event_types:
            result[f"action_{button}_{snake(kind)}"] = {
                "p": "device_automation", "atype": "trigger", "t": topic,
                "type": TRIGGER_TYPES.get(kind, kind), "stype": f"button_{source.button}",
                "pl": event_action(device, source, kind), "val_tpl": "{{ value_json.action }}",
            }
    return result


def discovery_messages(device: Device, topic_name: str, scheme: TopicScheme | None,
                       options: DiscoveryOptions, via: str | None = None) -> dict[str, str]:
    """Every discovery config topic of ``device`` → its JSON payload (retained).

    ``topic_name`` is the device's topic level (hub id or friendly name) and ``scheme`` the
    bridge's topic scheme (``TopicScheme(options.base_topic)`` when None); ``via`` the device id
    of the hub it is connected through (``dev.via_device``). A device without any entity gives
    no message.
    """
    if scheme is None:
        scheme = TopicScheme(options.base_topic)
    cmps = components(device, topic_name, scheme, options)
    if not cmps:
        return {}
    object_id = device_object_id(device.id, options)
    shared: dict[str, Any] = {
        "dev": _device_block(device, options, via),
        "o": _origin(options),
        "avty": [{"t": scheme.bridge("state")}, {"t": scheme.availability(topic_name)}],
        "avty_mode": "all",
        "qos": options.qos,
    }
    if options.device_based:
        return {f"{options.prefix}/device/{object_id}/config": dumps({**shared, "cmps": cmps})}
    messages: dict[str, str] = {}
    for key, config in cmps.items():
        payload = {k: v for k, v in config.items() if k != "p"}
        messages[f"{options.prefix}/{config['p']}/{object_id}/{key}/config"] = dumps(
            {**shared, **payload})
    return messages


def discovery_topics_for(device: Device, topic_name: str, scheme: TopicScheme | None,
                         options: DiscoveryOptions) -> list[str]:
    """The config topics of ``device``: publish an empty retained payload to each to remove it."""
    return sorted(discovery_messages(device, topic_name, scheme, options))


def component_count(messages: Mapping[str, str]) -> int:
    """How many entities the messages announce (empty payloads, i.e. removals, count 0)."""
    count = 0
    for payload in messages.values():
        if not payload:
            continue
        document = json.loads(payload)
        cmps = document.get("cmps")
        count += sum(1 for c in cmps.values() if len(c) > 1) if isinstance(cmps, dict) else 1
    return count


def discovery_changes(previous: Mapping[str, str | Config],
                      current: Mapping[str, str]) -> dict[str, str]:
    """The retained messages to publish to go from ``previous`` to ``current`` discovery.

    ``previous`` holds the configs' texts (as retained) or what :class:`Announced` remembers of
    them. Changed or new payloads are included; topics only in ``previous`` get ``""``
    (removal). A device-based payload that lost components gets them back as ``{"p": platform}``
    only, which is how Home Assistant removes a component from a device. Keep ``current`` (not
    the result) as the next ``previous``.
    """
    changes: dict[str, str] = {}
    for topic, payload in current.items():
        before = previous.get(topic)
        if isinstance(before, Config):
            if before.matches(payload):
                continue
            components = before.components
        elif before == payload:
            continue
        else:
            components = removable_components(before) if before and payload else ()
        changes[topic] = _with_removed_components(components, payload) if components else payload
    for topic in previous:
        if topic not in current and previous[topic]:
            changes[topic] = ""
    return changes


def _with_removed_components(before: Components, after: str) -> str:
    try:
        new = json.loads(after)
    except ValueError:
        return after
    new_cmps = new.get("cmps") if isinstance(new, dict) else None
    if not isinstance(new_cmps, dict):
        return after
    gone = {key: {"p": platform} for key, platform in before if key not in new_cmps}
    if not gone:
        return after
    new["cmps"] = {**new_cmps, **gone}
    return dumps(new)
