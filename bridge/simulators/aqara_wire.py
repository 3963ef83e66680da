"""The device tree both Aqara simulators serve (Studio's GetDevices, the cloud's spec intents).

Shape per seed document 001: endpoints → functions (``functionId``, ``functionCode``) → traits
(``traitId``, ``traitCode``, ``attribute`` with readable/writable/subscribable, type, format,
unit, min/max/step, enums, defaultValue, and optionally ``value`` and ``time``).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

from bridge.simulators.sample_home import SimDevice, SimTrait

FUNCTION_IDS = {
    "BasicInformation": 128,
    "Descriptor": 29,
    "PowerSource": 47,
    "Output": 6,
    "LevelControl": 8,
    "ColorControl": 768,
    "EnergyManagement": 144,
    "OccupancySensing": 1030,
    "IlluminanceMeasurement": 1024,
    "TemperatureMeasurement": 1026,
    "PressureMeasurement": 1027,
    "RelativeHumidityMeasurement": 1029,
    "BooleanState": 69,
    "WindowCovering": 258,
    "Thermostat": 513,
    "DoorLock": 257,
}
"""Matter cluster ids where a function has one; others get a stable made-up id."""


def function_id(code: str) -> int:
    """A function's numeric id (stable across runs)."""
    return FUNCTION_IDS.get(code) or 2048 + zlib.crc32(code.encode()) % 2048


def trait_id(function: int, code: str) -> int:
    """A trait's numeric id (stable across runs)."""
    if function == 128 and code == "Reachable":
        return 32901  # as in seed document 001
    return function * 256 + zlib.crc32(code.encode()) % 256


def trait_attribute(tr: SimTrait) -> dict[str, Any]:
    """A trait's ``attribute`` object."""
    attr: dict[str, Any] = {
        "readable": tr.readable,
        "writable": tr.writable,
        "subscribable": tr.subscribable,
        "type": tr.type,
        "format": tr.format,
    }
    if tr.unit is not None:
        attr["unit"] = tr.unit
    for name in ("min", "max", "step"):
        number = getattr(tr, name)
        if number is not None:
            attr[name] = number
    if tr.enums is not None:
        attr["enums"] = [{"key": k, "value": v} for k, v in tr.enums]
    if tr.default is not None:
        attr["defaultValue"] = tr.default
    return attr


def endpoints_tree(dev: SimDevice,
                   value_of: Callable[[SimTrait], Any] | None) -> list[dict[str, Any]]:
    """The device's ``endpoints`` list; readable traits carry ``value_of(trait)`` (and their
    ``time``) unless ``value_of`` is None."""
    endpoints = []
    for ep in dev.endpoints:
        functions = []
        for fn in ep.functions:
            fid = function_id(fn.code)
            traits = []
            for tr in fn.traits:
                entry: dict[str, Any] = {
                    "traitId": trait_id(fid, tr.code),
                    "traitCode": tr.code,
                    "attribute": trait_attribute(tr),
                }
                if value_of is not None and tr.readable:
                    entry["value"] = value_of(tr)
                    if tr.time is not None:
                        entry["time"] = tr.time
                traits.append(entry)
            functions.append({"functionId": fid, "functionCode": fn.code, "traits": traits})
        endpoints.append({"endpointId": ep.endpoint_id, "endpointTypes": list(ep.types),
                          "functions": functions})
    return endpoints
