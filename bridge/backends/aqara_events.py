"""Momentary events in Aqara's trait model (Studio and the Open API share it).

INFERRED throughout: no Aqara document we could read names the traits of a button press. Aqara's
trait model is Matter-derived, so a button is taken to be one endpoint with Matter's Switch
cluster events as traits of a function ``Switch``, pushed like any trait change (Studio's
``TraitValueUpdate``, the cloud's ``spec_report`` item with ``codePath``
``<endpoint>.Switch.<event>``):

====================  ==============================  =========================================
trait                 pushed value                    event
====================  ==============================  =========================================
MultiPressComplete    presses counted (1, 2, 3…)      ``single``, ``double``, ``triple``…
LongPress             anything                        ``hold``
LongRelease           anything                        ``release``
InitialPress,         —                               none: the same press again, before it is
ShortRelease,                                         known to be a single or a double
MultiPressOngoing
====================  ==============================  =========================================

A cube's gestures and a vibration sensor's alarms are ENUM traits whose pushed value is the
gesture's name (``Cube.Gesture``: shake, flip90, flip180, rotate_left, rotate_right, slide, tap,
fall, wakeup; ``Vibration.VibrationEvent``: vibration, tilt, drop); the enum's values list the
event types. ``MultiPressComplete``'s ``max`` is the most presses the button counts (2 when
absent). These traits are events, never state: they are taken out of the device's traits, so no
value of theirs is ever published or retained, and the button's label is its endpoint id.
"""

from __future__ import annotations

from typing import Any

from bridge.events import PRESSES, event_name
from bridge.model import Device, DeviceEvent, EventSource, Function, Trait, TraitAddress, TraitSpec

SWITCH = "Switch"
_HELD = {"LongPress": "hold", "LongRelease": "release"}
"""Switch traits that fire one event whatever their value."""
_SILENT = frozenset({"InitialPress", "ShortRelease", "MultiPressOngoing"})
_SWITCH_EVENTS = frozenset({"MultiPressComplete", *_HELD, *_SILENT})
_ENUM_EVENTS = frozenset({("Cube", "Gesture"), ("Vibration", "VibrationEvent")})
_EVENT_FUNCTIONS = frozenset({SWITCH, *(function for function, _ in _ENUM_EVENTS)})
"""Functions that may hold event traits: a snapshot looks no further into any other."""


def is_event_trait(function_code: str, trait_code: str) -> bool:
    """Whether a trait is a momentary event rather than state."""
    if function_code == SWITCH:
        return trait_code in _SWITCH_EVENTS
    return (function_code, trait_code) in _ENUM_EVENTS


def event_types(function_code: str, trait_code: str, spec: TraitSpec) -> tuple[str, ...]:
    """The event types an event trait can fire."""
    if function_code == SWITCH:
        if trait_code == "MultiPressComplete":
            most = int(spec.max) if spec.max is not None and spec.max >= 1 else 2
            return PRESSES[:most]
        held = _HELD.get(trait_code)
        return () if held is None else (held,)
    return tuple(dict.fromkeys(event_name(option.value) for option in spec.enums))


def decode(function_code: str, trait_code: str, value: Any) -> str | None:
    """The event type of a pushed event trait value (None: nothing to fire)."""
    if function_code == SWITCH:
        if trait_code == "MultiPressComplete":
            if isinstance(value, bool):
                return None
            try:
                count = int(value)
            except (TypeError, ValueError):
                return None
            return PRESSES[count - 1] if 1 <= count <= len(PRESSES) else None
        return _HELD.get(trait_code)
    return event_name(value) if isinstance(value, str) and value.strip() else None


def detach_events(device: Device) -> None:
    """Move the device's event traits out of its traits into ``device.events`` (one source
    per endpoint that has any). Cheap for the devices without: one set test per endpoint."""
    sources: list[EventSource] = []
    for endpoint in device.endpoints.values():
        if _EVENT_FUNCTIONS.isdisjoint(endpoint.functions):
            continue  # the usual case: a C-level pass, no Python loop over the functions
        kinds: list[str] = []
        paths: list[str] = []
        for code, function in list(endpoint.functions.items()):
            if code not in _EVENT_FUNCTIONS:
                continue
            kept: dict[str, Trait] = {}
            detached = False
            for key, trait in function.traits.items():
                if is_event_trait(code, trait.code):
                    detached = True
                    kinds.extend(event_types(code, trait.code, trait.spec))
                    paths.append(f"{endpoint.id}.{code}.{trait.code}")
                else:
                    kept[key] = trait
            if not detached:
                continue
            if kept:
                endpoint.functions[code] = Function(code, kept)
            else:
                del endpoint.functions[code]
        if kinds:
            sources.append(EventSource(endpoint.id, str(endpoint.id),
                                       tuple(dict.fromkeys(kinds)), tuple(paths)))
    if sources:
        device.events = tuple(sorted(sources, key=lambda source: source.endpoint_id))


def device_event(address: TraitAddress, value: Any, time: int | None) -> DeviceEvent | None:
    """The event of a pushed event trait (None when the push fires nothing)."""
    kind = decode(address.function_code, address.trait_code, value)
    if kind is None:
        return None
    return DeviceEvent(address.device_id, address.endpoint_id, str(address.endpoint_id), kind,
                       time)
