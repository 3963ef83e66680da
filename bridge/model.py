"""The one internal model every backend translates into: Device → Endpoint → Function → Trait.

Values held here are native Python values typed by the trait's spec: ``bool`` for BOOLEAN,
``int``/``float`` for NUMBER, ``str`` for STRING and ENUM (the enum's wire value, e.g. ``"2"``),
and parsed JSON (``dict``/``list``) for OTHER. Backends convert their wire encoding (typed JSON on
Studio, strings on the Aqara cloud, DP values on Tuya) with :mod:`bridge.codec`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

JsonValue = Any
"""A value as it travels in JSON: bool, int, float, str, list, dict or None."""


class TraitType(StrEnum):
    """The trait attribute ``type`` of the Aqara spec (seed document 001)."""

    BOOLEAN = "BOOLEAN"
    NUMBER = "NUMBER"
    STRING = "STRING"
    ENUM = "ENUM"
    OTHER = "OTHER"


@dataclass(frozen=True, slots=True)
class EnumOption:
    """One enum entry: ``key`` is the human label, ``value`` the wire value (a string)."""

    key: str
    value: str


@dataclass(frozen=True, slots=True)
class TraitSpec:
    """What a trait is and what may be written to it."""

    type: TraitType
    format: str = ""
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    enums: tuple[EnumOption, ...] = ()
    readable: bool = True
    writable: bool = False
    subscribable: bool = True
    default: str | None = None

    @property
    def is_integer(self) -> bool:
        """True when a NUMBER trait only takes whole numbers."""
        fmt = self.format.lower()
        if self.type is not TraitType.NUMBER:
            return False
        if "float" in fmt or "double" in fmt or "decimal" in fmt:
            return False
        if any(word in fmt for word in ("int", "uint", "long")):
            return True
        return self.step is not None and float(self.step).is_integer() and (
            self.min is None or float(self.min).is_integer()
        )


class TraitAddress(NamedTuple):
    """Where a trait lives: the key of every state and write operation."""

    device_id: str
    endpoint_id: int
    function_code: str
    trait_code: str

    def path(self) -> str:
        """The Aqara code path ``endpointId.functionCode.traitCode`` (without the device)."""
        return f"{self.endpoint_id}.{self.function_code}.{self.trait_code}"


@dataclass(slots=True)
class Trait:
    code: str
    spec: TraitSpec
    value: JsonValue = None
    time: int | None = None


@dataclass(slots=True)
class Function:
    code: str
    traits: dict[str, Trait] = field(default_factory=dict)


@dataclass(slots=True)
class Endpoint:
    id: int
    types: tuple[str, ...] = ()
    functions: dict[str, Function] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EventSource:
    """A part of a device that fires momentary events (a button, a cube, a vibration sensor).

    ``button`` is its label (``"1"``, ``"2"``…: the endpoint on Aqara, the DP's number on Tuya)
    and ``event_types`` the normalised events it can fire (see :mod:`bridge.events`). Events are
    never state: the bridge publishes them once, not retained, and keeps no value for them.
    """

    endpoint_id: int
    button: str
    event_types: tuple[str, ...]
    hub_codes: tuple[str, ...] = ()
    """The hub's own names for what reports these events (e.g. Aqara code paths), for the
    backend's push subscriptions."""


@dataclass(slots=True)
class Device:
    """A device as the hub describes it. ``name`` is the hub's name, not the MQTT friendly name."""

    id: str
    name: str
    backend: str
    model: str = ""
    types: tuple[str, ...] = ()
    online: bool = True
    endpoints: dict[int, Endpoint] = field(default_factory=dict)
    extra: dict[str, JsonValue] = field(default_factory=dict)
    """Backend-specific facts shown in ``bridge/devices`` (e.g. Tuya home and room)."""
    events: tuple[EventSource, ...] = ()
    """The momentary events the device fires (buttons, gestures), in button order."""

    def event_source(self, endpoint_id: int, button: str) -> EventSource | None:
        """The event source at that endpoint with that button label, or None."""
        for source in self.events:
            if source.endpoint_id == endpoint_id and source.button == button:
                return source
        return None

    def trait(self, endpoint_id: int, function_code: str, trait_code: str) -> Trait | None:
        """The trait at that place, or None."""
        endpoint = self.endpoints.get(endpoint_id)
        if endpoint is None:
            return None
        function = endpoint.functions.get(function_code)
        if function is None:
            return None
        return function.traits.get(trait_code)

    def iter_traits(self) -> list[tuple[TraitAddress, Trait]]:
        """Every trait of the device with its address, in endpoint/function/trait order."""
        return [
            (TraitAddress(self.id, endpoint.id, function.code, trait.code), trait)
            for endpoint in self.endpoints.values()
            for function in endpoint.functions.values()
            for trait in function.traits.values()
        ]


def event_action(device: Device, source: EventSource, event_type: str) -> str:
    """The zigbee2mqtt-style ``action`` string of an event: the event type alone on a device with
    one event source (``double``), ``button_<n>_<event>`` on one with several
    (``button_2_double``), as zigbee2mqtt names the presses of multi-button remotes (Aqara
    Opple, Tuya scene switches)."""
    if len(device.events) <= 1:
        return event_type
    return f"button_{source.button}_{event_type}"


# ---- events: backend → core -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TraitChanged:
    address: TraitAddress
    value: JsonValue
    time: int | None = None


@dataclass(frozen=True, slots=True)
class DeviceAdded:
    device: Device


@dataclass(frozen=True, slots=True)
class DeviceRemoved:
    device_id: str


@dataclass(frozen=True, slots=True)
class DeviceRenamed:
    device_id: str
    name: str


@dataclass(frozen=True, slots=True)
class DeviceUpdated:
    """The device's spec changed (e.g. DEVICE_TRAIT_PARAMETER_UPDATE): the new full device."""

    device: Device


@dataclass(frozen=True, slots=True)
class Availability:
    device_id: str
    online: bool


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """A momentary event the hub reported (a press, a gesture): published once, never stored.

    ``time`` is the hub's timestamp (ms) and ``event_id`` the hub's id for the report when it
    gives one; together they let the core drop a repeated delivery of the same event.
    """

    device_id: str
    endpoint_id: int
    button: str
    event_type: str
    time: int | None = None
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every device of the backend with specs and current values, after each (re)connect."""

    devices: tuple[Device, ...]


@dataclass(frozen=True, slots=True)
class BackendStatus:
    """Connection state changes of a backend, for ``bridge/info`` and device availability."""

    connected: bool
    detail: str = ""


Event = (
    TraitChanged
    | DeviceAdded
    | DeviceRemoved
    | DeviceRenamed
    | DeviceUpdated
    | Availability
    | DeviceEvent
    | Snapshot
    | BackendStatus
)


# ---- writes: core → backend -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WriteItem:
    """One validated write: the value is already in the model's native type."""

    address: TraitAddress
    value: JsonValue


@dataclass(frozen=True, slots=True)
class WriteFailure:
    """A write item the hub refused, with its code and reason."""

    item: WriteItem
    code: int | str | None
    message: str
