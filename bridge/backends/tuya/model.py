"""Tuya data points (DP codes with their type and ``values``) → the common model, and back.

A Tuya device becomes one :class:`~bridge.model.Device` with a single endpoint ``1``. Each DP code
becomes a trait whose trait code is the DP code itself; traits are grouped into functions by
:func:`function_for` (the code's own meaning first, then the device's category). The spec comes
from ``GET /v1.0/iot-03/devices/{id}/specification`` (``functions`` = writable DPs, ``status`` =
reported DPs); Tuya sends each DP's ``values`` as a JSON *string*.

DP type → trait (``values`` fields in brackets)

==============  ===============  ================================================================
Tuya type       trait type       spec and value
==============  ===============  ================================================================
Boolean         BOOLEAN          ``true``/``false`` (also ``"true"``/``"1"`` from the seed's
                                 stringified home listings)
Integer         NUMBER           [min, max, scale, step, unit] divided by 10^scale: raw ``215``
(``Value``)                      with scale 1 is ``21.5``; min/max/step become floats; format
                                 ``int`` when scale is 0, else ``float``. Writes are multiplied
                                 back and rounded to a Tuya integer.
Enum            ENUM             [range] every option is ``key = value = the Tuya string``
String, Char    STRING           [maxlen] as is
Raw             STRING           base64 text as is (format ``raw``)
Json            OTHER            a JSON string is parsed into an object; writes send the object
Bitmap          NUMBER           [label, maxlen] the integer, min 0, max 2^maxlen - 1, step 1
anything else   OTHER            as is
==============  ===============  ================================================================

``readable`` (and ``subscribable``) when the code is in ``status``; ``writable`` when it is in
``functions``. A code in both takes the range of its ``functions`` entry.

DP code → function (first matching row wins; then the category default; then ``device``)

==========  ======================================================================================
function    DP codes
==========  ======================================================================================
power       ``cur_power``, ``cur_voltage``, ``cur_current``, ``add_ele``, ``phase_a/b/c``,
            ``total_forward_energy``, ``forward_energy_total``
battery     ``battery_percentage``, ``battery_state``, ``battery_value``, ``va_battery``,
            ``residual_electricity``
light       ``switch_led[_n]``, ``work_mode``, ``bright_value[_v2|_n]``, ``temp_value[_v2|_n]``,
            ``colour_data[_v2]``, ``scene_data[_v2]``, ``music_data``, ``control_data``
switch      ``switch``, ``switch_n``, ``switch_usbn``, ``countdown_n``, ``relay_status``,
            ``child_lock``, ``light_mode``
cover       ``control[_n]``, ``percent_control[_n]``, ``percent_state[_n]``,
            ``control_back[_mode]``
sensor      ``va_temperature``, ``va_humidity``, ``temp_current``, ``humidity_value``,
            ``temp_unit_convert``, ``pir``, ``doorcontact_state``, ``presence_state``,
            ``smoke_sensor_state``, ``watersensor_state``, ``co2_value``, ``pm25_value``,
            ``voc_value``, ``ch2o_value``
==========  ======================================================================================

Category defaults (Tuya category codes): switch ``cz pc kg tdq``; light ``dj dd xdd fwd dc tgq
tgkg``; cover ``cl clkg ckmkzq qt`` (``qt`` is the seed's "All-in-one curtain"); sensor ``wsdcg
mcs pir ywbj rqbj sj co2bj pm25 hjjcy ldcg cobj``; climate ``wk wkf kt``; fan ``fs fsd``;
lock ``ms``.

Example: the sample socket's ``switch_1`` is ``<device>/1/switch/switch_1``, its ``cur_power``
(Integer, scale 1, unit W) ``<device>/1/power/cur_power`` = ``12.3``; a curtain's ``mode`` is
``<device>/1/cover/mode``; a light's ``bright_value_v2`` is ``<device>/1/light/bright_value_v2``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from bridge.backends.tuya.events import event_sources, is_event_dp
from bridge.model import Device, Endpoint, EnumOption, Function, Trait, TraitSpec, TraitType

__all__ = [
    "CATEGORY_FUNCTIONS",
    "CODE_FUNCTIONS",
    "ENDPOINT_ID",
    "DpSpec",
    "TuyaSpec",
    "build_device",
    "from_tuya",
    "function_for",
    "parse_spec",
    "parse_values",
    "status_map",
    "to_tuya",
    "trait_spec",
]

ENDPOINT_ID = 1
"""Every Tuya device has one endpoint in the model."""

CODE_FUNCTIONS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), function) for pattern, function in (
        (r"cur_(power|voltage|current)|add_ele|phase_[abc]|total_forward_energy"
         r"|forward_energy_total", "power"),
        (r"battery_(percentage|state|value)|va_battery|residual_electricity", "battery"),
        (r"switch_led(_\d+)?|work_mode|bright_value(_v2|_\d+)?|temp_value(_v2|_\d+)?"
         r"|colour_data(_v2)?|scene_data(_v2)?|music_data|control_data", "light"),
        (r"switch|switch_\d+|switch_usb\d+|countdown_\d+|relay_status|child_lock|light_mode",
         "switch"),
        (r"control(_\d+)?|percent_control(_\d+)?|percent_state(_\d+)?|control_back(_mode)?",
         "cover"),
        (r"va_temperature|va_humidity|temp_current|humidity_value|temp_unit_convert|pir"
         r"|doorcontact_state|presence_state|smoke_sensor_state|watersensor_state|co2_value"
         r"|pm25_value|voc_value|ch2o_value", "sensor"),
    )
)
"""DP code patterns (full match) → function, checked in order."""

CATEGORY_FUNCTIONS: dict[str, str] = {
    **dict.fromkeys(("cz", "pc", "kg", "tdq"), "switch"),
    **dict.fromkeys(("dj", "dd", "xdd", "fwd", "dc", "tgq", "tgkg"), "light"),
    **dict.fromkeys(("cl", "clkg", "ckmkzq", "qt"), "cover"),
    **dict.fromkeys(("wsdcg", "mcs", "pir", "ywbj", "rqbj", "sj", "co2bj", "pm25", "hjjcy",
                     "ldcg", "cobj"), "sensor"),
    **dict.fromkeys(("wk", "wkf", "kt"), "climate"),
    **dict.fromkeys(("fs", "fsd"), "fan"),
    "ms": "lock",
}
"""Tuya category code → the function of DP codes no pattern claims."""

DEFAULT_FUNCTION = "device"

_TYPE_NAMES = {
    "bool": "Boolean", "boolean": "Boolean",
    "integer": "Integer", "value": "Integer", "int": "Integer",
    "enum": "Enum",
    "string": "String", "char": "String", "str": "String",
    "json": "Json",
    "bitmap": "Bitmap", "fault": "Bitmap",
    "raw": "Raw",
}


def function_for(code: str, category: str = "") -> str:
    """The function a DP code lands in (see the module's table)."""
    for pattern, function in CODE_FUNCTIONS:
        if pattern.fullmatch(code):
            return function
    return CATEGORY_FUNCTIONS.get(category, DEFAULT_FUNCTION)


def parse_values(raw: Any) -> dict[str, Any]:
    """A DP's ``values``: Tuya sends a JSON string; an object is taken as is; junk gives {}."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return {}
    return dict(raw) if isinstance(raw, Mapping) else {}


def _type_name(raw: Any) -> str:
    text = str(raw or "").strip()
    return _TYPE_NAMES.get(text.lower(), text or "Raw")


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return default
    return default


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


@dataclass(frozen=True, slots=True)
class DpSpec:
    """One data point: its code, Tuya type name (normalised) and parsed ``values``."""

    code: str
    type: str
    values: Mapping[str, Any] = field(default_factory=dict)
    readable: bool = True
    writable: bool = False

    @property
    def scale(self) -> int:
        """Decimal places of an Integer DP (0..9; anything odd counts as 0)."""
        scale = _int(self.values.get("scale"), 0)
        return scale if 0 <= scale <= 9 else 0

    @property
    def options(self) -> tuple[str, ...]:
        """The options of an Enum DP."""
        found = self.values.get("range")
        if isinstance(found, list):
            return tuple(str(option) for option in found)
        return ()


@dataclass(slots=True)
class TuyaSpec:
    """A device's DPs (from ``specification``, or ``functions`` plus observed status)."""

    category: str = ""
    dps: dict[str, DpSpec] = field(default_factory=dict)


def parse_spec(result: Any) -> TuyaSpec:
    """Parse a ``specification`` / ``specifications`` / ``functions`` result tolerantly.

    ``functions`` entries are writable, ``status`` entries readable; a code in both is both and
    takes the ``functions`` range. Without a ``status`` list (the ``functions`` endpoint) every
    function is taken as readable too; with one, a function missing from it is write-only.
    """
    spec = TuyaSpec()
    if not isinstance(result, Mapping):
        return spec
    spec.category = str(result.get("category") or "")
    statuses = _dp_list(result.get("status"))
    for code, type_name, values in statuses:
        spec.dps[code] = DpSpec(code, type_name, values, readable=True, writable=False)
    has_status_list = "status" in result
    for code, type_name, values in _dp_list(result.get("functions")):
        readable = code in spec.dps or not has_status_list
        spec.dps[code] = DpSpec(code, type_name, values, readable=readable, writable=True)
    return spec


def _dp_list(raw: Any) -> list[tuple[str, str, dict[str, Any]]]:
    out: list[tuple[str, str, dict[str, Any]]] = []
    if not isinstance(raw, list):
        return out
    for item in raw:
        if not isinstance(item, Mapping):
            continue
        code = item.get("code")
        if not isinstance(code, str) or not code:
            continue
        out.append((code, _type_name(item.get("type")), parse_values(item.get("values"))))
    return out


def _scaled(raw: Any, scale: int) -> float | None:
    number = _number(raw)
    return None if number is None else float(number.scaleb(-scale))


def trait_spec(dp: DpSpec) -> TraitSpec:
    """The model spec of a DP (see the module's table)."""
    return replace(_typed_spec(dp), readable=dp.readable, writable=dp.writable,
                   subscribable=dp.readable)


def _typed_spec(dp: DpSpec) -> TraitSpec:
    values = dp.values
    unit = values.get("unit")
    unit_text = str(unit) if isinstance(unit, str) and unit else None
    if dp.type == "Boolean":
        return TraitSpec(TraitType.BOOLEAN, format="bool")
    if dp.type == "Integer":
        scale = dp.scale
        step = _scaled(values.get("step"), scale)
        return TraitSpec(TraitType.NUMBER, format="int" if scale == 0 else "float",
                         unit=unit_text, min=_scaled(values.get("min"), scale),
                         max=_scaled(values.get("max"), scale),
                         step=step if step is not None and step > 0 else None)
    if dp.type == "Enum":
        return TraitSpec(TraitType.ENUM, format="enum",
                         enums=tuple(EnumOption(o, o) for o in dp.options))
    if dp.type == "String":
        return TraitSpec(TraitType.STRING, format="string")
    if dp.type == "Raw":
        return TraitSpec(TraitType.STRING, format="raw")
    if dp.type == "Json":
        return TraitSpec(TraitType.OTHER, format="json")
    if dp.type == "Bitmap":
        maxlen = _int(values.get("maxlen"), 0)
        top = float(2**maxlen - 1) if 0 < maxlen <= 64 else None
        return TraitSpec(TraitType.NUMBER, format="bitmap", min=0.0, max=top, step=1.0)
    return TraitSpec(TraitType.OTHER, format=dp.type.lower())


_TRUE = frozenset({"true", "1", "on"})
_FALSE = frozenset({"false", "0", "off"})


def from_tuya(dp: DpSpec, raw: Any) -> Any:
    """A reported DP value → the model value; ValueError when it cannot be one.

    Tolerant of the seed's stringified values (``"true"``, ``"0"``) and of JSON sent as text.
    """
    if raw is None:
        return None
    kind = dp.type
    if kind == "Boolean":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int | float) and raw in (0, 1):
            return bool(raw)
        if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise ValueError(f"{raw!r} is not a boolean")
    if kind in ("Integer", "Bitmap"):
        number = _number(raw)
        if number is None or (kind == "Bitmap" and number != number.to_integral_value()):
            raise ValueError(f"{raw!r} is not a number")
        scale = dp.scale if kind == "Integer" else 0
        if scale == 0:
            return int(number) if number == number.to_integral_value() else float(number)
        return float(number.scaleb(-scale))
    if kind == "Enum":
        if isinstance(raw, bool):
            return "true" if raw else "false"
        if isinstance(raw, str | int | float):
            return str(raw)
        raise ValueError(f"{raw!r} is not an enum value")
    if kind in ("String", "Raw"):
        if isinstance(raw, str):
            return raw
        if isinstance(raw, bool | int | float):
            return json.dumps(raw)
        return json.dumps(raw, separators=(",", ":"), ensure_ascii=False)
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def to_tuya(dp: DpSpec, value: Any) -> Any:
    """A validated model value → the DP value a device command carries.

    Integer DPs are multiplied by 10^scale and rounded (half to even) to an integer.
    """
    kind = dp.type
    if kind == "Boolean":
        return bool(value)
    if kind in ("Integer", "Bitmap"):
        number = _number(value)
        if number is None:
            raise ValueError(f"{value!r} is not a number")
        scale = dp.scale if kind == "Integer" else 0
        return int(number.scaleb(scale).to_integral_value(ROUND_HALF_EVEN))
    if kind in ("Enum", "String", "Raw"):
        return value if isinstance(value, str) else str(value)
    return value


def status_map(raw: Any) -> dict[str, Any]:
    """``[{"code", "value"}, ...]`` (or a ``{code: value}`` object) → ``{code: value}``."""
    if isinstance(raw, Mapping):
        return {str(k): v for k, v in raw.items()}
    out: dict[str, Any] = {}
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, Mapping) and isinstance(item.get("code"), str):
                out[item["code"]] = item.get("value")
    return out


def build_device(info: Mapping[str, Any], spec: TuyaSpec, backend: str,
                 values: Mapping[str, Any], extra: Mapping[str, Any] | None = None,
                 ) -> tuple[Device, list[str]]:
    """The model device for a Tuya device object, its spec and its raw status values.

    Returns the device and the DP codes whose reported value could not be converted (the caller
    logs them). Status codes the spec does not describe are left out.
    """
    device_id = str(info.get("id") or info.get("uuid") or "")
    category = spec.category or str(info.get("category") or "")
    functions: dict[str, Function] = {}
    bad: list[str] = []
    for code, dp in spec.dps.items():
        if is_event_dp(dp):
            continue  # an event, not state: the device's event sources below
        trait = Trait(code, trait_spec(dp))
        if dp.readable and code in values:
            try:
                trait.value = from_tuya(dp, values[code])
            except ValueError:
                bad.append(code)
        group = function_for(code, category)
        functions.setdefault(group, Function(group)).traits[code] = trait
    endpoint = Endpoint(ENDPOINT_ID, (category,) if category else (), functions)
    model = info.get("product_name") or info.get("product_id") or info.get("model") or ""
    online = info.get("online")
    device = Device(
        id=device_id,
        name=str(info.get("name") or device_id),
        backend=backend,
        model=str(model),
        types=(category,) if category else (),
        online=online if isinstance(online, bool) else str(online).lower() != "false",
        endpoints={ENDPOINT_ID: endpoint},
        extra=dict(extra or {}),
        events=event_sources(spec.dps.values(), ENDPOINT_ID),
    )
    return device, bad
