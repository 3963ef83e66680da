"""Parse Aqara's device/endpoint/function/trait JSON (Studio and Open API share it) into the model.

Tolerant of the documented variants: trait metadata under ``attribute`` (seed document 001) or
``parameter`` (third-party Studio client); device ids as ``deviceId``, ``did`` or ``subjectId``;
names as ``name`` or ``deviceName``; types as ``deviceTypesList`` or ``types``; numbers given as
numbers or numeric strings; online state as 1/0, booleans or strings. Event traits (button
presses, gestures) become the device's event sources, not traits (:mod:`.aqara_events`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, TypeVar

from bridge.backends.aqara_events import detach_events
from bridge.codec import from_wire
from bridge.model import Device, Endpoint, EnumOption, Function, Trait, TraitSpec, TraitType


class SpecError(ValueError):
    """The hub's device description is unusable."""


_T = TypeVar("_T")
_SHARED: dict[Any, Any] = {}
_SHARED_MAX = 50_000


def shared(value: _T) -> _T:
    """One instance per distinct value: devices of one model repeat the same specs and type
    lists, and thousands of copies of them were most of a large home's memory."""
    if len(_SHARED) >= _SHARED_MAX:  # a pathological hub: stop sharing rather than grow
        return value
    return _SHARED.setdefault(value, value)  # type: ignore[no-any-return]


def first(obj: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    """The value of the first key present in ``obj`` (None values count as absent)."""
    for key in keys:
        value = obj.get(key)
        if value is not None:
            return value
    return default


def _number(value: Any) -> float | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else number


def _flag(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def parse_trait_spec(attribute: Mapping[str, Any]) -> TraitSpec:
    """A TraitSpec from a trait's ``attribute``/``parameter`` object."""
    raw_type = str(attribute.get("type") or "OTHER").upper()
    trait_type = TraitType(raw_type) if raw_type in TraitType.__members__ else TraitType.OTHER
    enums = tuple(
        EnumOption(key=str(first(e, "key", "name", default="")), value=str(e.get("value", "")))
        for e in attribute.get("enums") or ()
        if isinstance(e, Mapping)
    )
    unit = attribute.get("unit")
    default = attribute.get("defaultValue")
    return shared(TraitSpec(
        type=trait_type,
        format=str(attribute.get("format") or ""),
        unit=str(unit) if unit not in (None, "") else None,
        min=_number(attribute.get("min")),
        max=_number(attribute.get("max")),
        step=_number(attribute.get("step")),
        enums=enums,
        readable=_flag(attribute.get("readable"), True),
        writable=_flag(attribute.get("writable"), False),
        subscribable=_flag(attribute.get("subscribable"), True),
        default=None if default is None else str(default),
    ))


def parse_online(value: Any, default: bool = True) -> bool:
    """Online state from 1/0, true/false or 'online'/'offline'."""
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "online")
    return bool(value)


def parse_device(obj: Mapping[str, Any], backend: str) -> Device:
    """A Device with specs and current values from one device tree object.

    Raises SpecError, whatever is wrong with the shape of the tree.
    """
    try:
        return _parse_device(obj, backend)
    except SpecError:
        raise
    except (AttributeError, TypeError, ValueError, KeyError) as exc:
        device_id = obj.get("deviceId") if isinstance(obj, Mapping) else None
        raise SpecError(f"device {device_id or '?'}: malformed description ({exc})") from None


def _parse_device(obj: Mapping[str, Any], backend: str) -> Device:
    if not isinstance(obj, Mapping):
        raise SpecError("a device description is not an object")
    device_id = first(obj, "deviceId", "did", "subjectId")
    if not isinstance(device_id, str) or not device_id:
        raise SpecError("device without a deviceId")
    device = Device(
        id=device_id,
        name=str(first(obj, "name", "deviceName", default=device_id)),
        backend=backend,
        model=sys.intern(str(first(obj, "model", default=""))),
        types=shared(tuple(sys.intern(str(t))
                           for t in first(obj, "deviceTypesList", "types", default=()))),
        online=parse_online(first(obj, "state", "online")),
    )
    space = obj.get("space")
    room = space.get("name") if isinstance(space, Mapping) else first(
        obj, "spaceName", "positionName", "roomName")
    if isinstance(room, str) and room.strip():
        device.extra["room"] = room.strip()  # Home Assistant's suggested area
    for ep in obj.get("endpoints") or ():
        endpoint_id = _number(first(ep, "endpointId", "id"))
        if not isinstance(endpoint_id, int):
            raise SpecError(f"device {device_id}: endpoint without an integer endpointId")
        endpoint = Endpoint(
            id=endpoint_id,
            types=shared(tuple(sys.intern(str(t))
                               for t in first(ep, "endpointTypes", "types", default=()))),
        )
        for fn in ep.get("functions") or ():
            code = first(fn, "functionCode", "code")
            if not isinstance(code, str):
                raise SpecError(f"device {device_id}: function without a functionCode")
            code = sys.intern(code)  # codes repeat across devices: one string each
            function = endpoint.functions.setdefault(code, Function(code))
            for tr in fn.get("traits") or ():
                trait = _parse_trait(tr, device_id)
                function.traits[trait.code] = trait
        device.endpoints[endpoint_id] = endpoint
    detach_events(device)
    return device


def _parse_trait(obj: Mapping[str, Any], device_id: str) -> Trait:
    code = first(obj, "traitCode", "code")
    if not isinstance(code, str):
        raise SpecError(f"device {device_id}: trait without a traitCode")
    spec = parse_trait_spec(first(obj, "attribute", "parameter", default={}))
    value: Any = None
    if obj.get("value") is not None:
        try:
            value = from_wire(spec, obj["value"])
        except ValueError:
            value = None
    time = _number(obj.get("time"))
    return Trait(sys.intern(code), spec, value, int(time) if time is not None else None)
