"""Homie 5 convention payloads for one device (pure, sans-IO; https://homieiot.github.io/).

Layout under the root (``homie``)::

    homie/5/<device-id>/$state                 lifecycle (the caller's)
    homie/5/<device-id>/$description           JSON description (:func:`description`)
    homie/5/<device-id>/<node-id>/<prop-id>    the value (retained)
    homie/5/<device-id>/<node-id>/<prop-id>/set   commands (:meth:`Convention.set_subscription`)

Ids follow Homie's rule (``a-z``, ``0-9`` and ``-``, never starting or ending with ``-``):

- device: the hub device id, ``.`` → ``-`` (``lumi1.54ef448a0b73`` → ``lumi1-54ef448a0b73``) when
  it is lower-case letters and digits joined by single dots; any other id becomes a slug plus
  ``--`` and a hash (canonical ids never contain ``--``, so the two kinds cannot collide);
- node: endpoint + function, ``ep<endpointId>-<function-kebab>`` (``ep2-output``);
- property: the trait code in kebab case (``OnOff`` → ``on-off``, ``PM2.5Density`` →
  ``pm2-5-density``); codes that kebab alike within one node get a hash suffix each.

Datatypes: BOOLEAN → ``boolean``, NUMBER → ``integer``/``float`` (format ``min:max[:step]``),
ENUM → ``enum`` (format: the key labels; ``string`` when a label cannot be listed), STRING →
``string``, OTHER → ``json``. Write-only traits are settable and not retained (no value).
Values: ``true``/``false``, plain decimal numbers, enum key labels, strings (the empty string as a
single NUL byte, as Homie requires), compact JSON. Units are the convention's recommended strings
where the hub spells one otherwise (``℃`` → ``°C``, ``lux`` → ``lx``, ``mired`` → ``MK⁻¹``).

A description's ``version`` only grows (:class:`Versions`): the same document keeps its version,
a changed one gets ``max(now in ms, last + 1)``, with the last versions kept across restarts
when the caller persists them.

A :class:`Convention` is one Homie major version under one root: 5 (``<root>/5/<device>/…``,
the description as one JSON document) or 4 (``<root>/<device>/…``, the same description as one
topic per attribute, :mod:`bridge.outputs.homie4`). Everything else is shared.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bridge.codec import plain_number, string_label, to_payload
from bridge.model import Device, EventSource, TraitAddress, TraitSpec, TraitType
from bridge.outputs.discovery import humanize, normalize_unit, trait_label
from bridge.outputs.homie4 import attribute_messages

HOMIE_VERSION = "5.0"
"""The ``homie`` field of every description."""

INIT = "init"
READY = "ready"
DISCONNECTED = "disconnected"
SLEEPING = "sleeping"
LOST = "lost"
"""``$state`` values (Homie device lifecycle)."""

EMPTY_STRING = "\x00"
"""How Homie carries an empty string value (an empty payload would delete a retained topic)."""

ID_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
"""A valid Homie id."""

_CANONICAL_DEVICE = re.compile(r"[a-z0-9]+(?:\.[a-z0-9]+)*")


def _digest(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:length]


def kebab(code: str) -> str:
    """``HeaterCoolerMode`` → ``heater-cooler-mode`` (always a valid, non-empty Homie id)."""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", code)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def device_homie_id(device_id: str) -> str:
    """The Homie device id of a hub device id (deterministic, collision-free; see module doc)."""
    if _CANONICAL_DEVICE.fullmatch(device_id):
        return device_id.replace(".", "-")
    slug = re.sub(r"[^a-z0-9]+", "-", device_id.lower()).strip("-") or "device"
    return f"{slug}--{_digest(device_id)}"


def node_homie_id(endpoint_id: int, function_code: str) -> str:
    """``ep<endpointId>-<function-kebab>``, before collision suffixes."""
    return f"ep{endpoint_id}-{kebab(function_code)}"


@dataclass(frozen=True, slots=True)
class Convention:
    """One Homie major version (5 or 4) under one root topic (the Homie 5 domain, the Homie 4
    base topic)."""

    major: int = 5
    root: str = "homie"

    @property
    def prefix(self) -> str:
        """What every device topic starts with: ``<root>/5`` or ``<root>``."""
        return f"{self.root}/5" if self.major == 5 else self.root

    def state_topic(self, homie_id: str) -> str:
        """A device's ``$state``."""
        return f"{self.prefix}/{homie_id}/$state"

    def set_subscription(self) -> str:
        """The topic filter for every property's ``/set`` topic."""
        return f"{self.prefix}/+/+/+/set"

    def description_messages(self, homie_id: str, document: dict[str, Any]) -> dict[str, str]:
        """The retained topics that describe a device (``$description``, or Homie 4's
        attributes)."""
        base = f"{self.prefix}/{homie_id}"
        if self.major == 5:
            return {f"{base}/$description": document_text(document)}
        return attribute_messages(base, document)


HOMIE5 = Convention()
"""Homie 5 under the default domain."""


# ---- layout -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Layout:
    """The Homie ids of one device's traits, both ways."""

    device_id: str
    nodes: dict[tuple[int, str], str]
    properties: dict[TraitAddress, tuple[str, str]]
    addresses: dict[tuple[str, str], TraitAddress]


def _resolve(candidates: dict[Any, str], raw: dict[Any, str]) -> dict[Any, str]:
    """Ids that collide get ``-<hash of the raw code>`` each, so every id stays unique."""
    counts: dict[str, int] = {}
    for value in candidates.values():
        counts[value] = counts.get(value, 0) + 1
    return {key: value if counts[value] == 1 else f"{value}-{_digest(raw[key], 6)}"
            for key, value in candidates.items()}


def layout(device: Device) -> Layout:
    """Node and property ids of every trait of ``device``."""
    node_candidates: dict[tuple[int, str], str] = {}
    node_raw: dict[tuple[int, str], str] = {}
    for endpoint in device.endpoints.values():
        for function in endpoint.functions.values():
            key = (endpoint.id, function.code)
            node_candidates[key] = node_homie_id(endpoint.id, function.code)
            node_raw[key] = f"{endpoint.id}.{function.code}"
    nodes = _resolve(node_candidates, node_raw)
    properties: dict[TraitAddress, tuple[str, str]] = {}
    for endpoint in device.endpoints.values():
        for function in endpoint.functions.values():
            node = nodes[(endpoint.id, function.code)]
            prop_candidates = {code: kebab(code) for code in function.traits}
            props = _resolve(prop_candidates, {code: code for code in function.traits})
            for code in function.traits:
                address = TraitAddress(device.id, endpoint.id, function.code, code)
                properties[address] = (node, props[code])
    addresses = {ids: address for address, ids in properties.items()}
    return Layout(device_homie_id(device.id), nodes, properties, addresses)


EVENTS_NODE = "events"
"""The node of a device's momentary events (never an ``ep<n>-…`` function node)."""


def event_property(source: EventSource) -> str:
    """``button-<n>``: the non-retained property an event source's events are published on."""
    return f"button-{kebab(source.button)}"


def event_topic(device: Device, source: EventSource, convention: Convention = HOMIE5) -> str:
    """The topic of an event source's property (its value is the event type, not retained)."""
    base = f"{convention.prefix}/{device_homie_id(device.id)}"
    return f"{base}/{EVENTS_NODE}/{event_property(source)}"


# ---- description --------------------------------------------------------------------------------


def _listable(labels: list[str]) -> bool:
    return bool(labels) and len(set(labels)) == len(labels) and all(
        label and label == label.strip() and "," not in label for label in labels)


def datatype(spec: TraitSpec) -> str:
    """The Homie datatype of a trait."""
    kind = spec.type
    if kind is TraitType.BOOLEAN:
        return "boolean"
    if kind is TraitType.NUMBER:
        return "integer" if spec.is_integer else "float"
    if kind is TraitType.ENUM:
        return "enum" if _listable([o.key for o in spec.enums]) else "string"
    if kind is TraitType.STRING:
        return "string"
    return "json"


def _bound(value: float | None, integer: bool, up: bool) -> str:
    if value is None or not math.isfinite(value):
        return ""
    if integer:
        return str(math.ceil(value) if up else math.floor(value))
    return plain_number(value)


def value_format(spec: TraitSpec) -> str | None:
    """The Homie ``format`` of a trait, or None when it has none."""
    kind = datatype(spec)
    if kind in ("integer", "float"):
        integer = kind == "integer"
        if spec.min is not None and spec.max is not None and spec.min > spec.max:
            return None
        low = _bound(spec.min, integer, up=True)
        high = _bound(spec.max, integer, up=False)
        step = ""
        if (spec.step is not None and spec.step > 0 and math.isfinite(spec.step)
                and (not integer or float(spec.step).is_integer())):
            step = _bound(spec.step, integer, up=False)
        if not (low or high or step):
            return None
        return f"{low}:{high}:{step}" if step else f"{low}:{high}"
    if kind == "enum":
        return ",".join(option.key for option in spec.enums)
    if kind == "boolean" and len(spec.enums) == 2:
        false_label = true_label = None
        for option in spec.enums:
            wire = option.value.strip().lower()
            if wire in ("0", "false", "off"):
                false_label = option.key
            elif wire in ("1", "true", "on"):
                true_label = option.key
        if false_label and true_label and _listable([false_label, true_label]):
            return f"{false_label},{true_label}"
    return None


def homie_value(spec: TraitSpec, value: Any) -> str | None:
    """A model value as a Homie payload; None for no known value."""
    if value is None:
        return None
    kind = datatype(spec)
    if kind == "boolean":
        return "true" if value is True else "false" if value is False else str(value)
    if kind == "json":
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, str):  # Homie strings are raw text, never JSON-quoted
        return string_label(spec, value) or EMPTY_STRING
    return to_payload(spec, value)


_UNITS = {"mired": "MK⁻¹", "Mired": "MK⁻¹", "º": "°", "deg": "°", "sec": "s", "l": "L",
          "m3": "m³", "RPM": "rpm"}
"""Hub spellings of the convention's recommended units (after Home Assistant's aliases, which
already give ``°C``, ``lx``, ``kWh``, ``V``, ``A``, ``W``, ``ppm``)."""


def homie_unit(unit: str | None) -> str | None:
    """The unit as the Homie convention spells it; other units pass unchanged; None for none."""
    unit = normalize_unit(unit)
    return None if unit is None else _UNITS.get(unit, unit)


def description(device: Device, parent: str | None = None) -> dict[str, Any]:
    """The ``$description`` document without its ``version`` (see :class:`Versions`).

    ``parent`` (a Homie device id, e.g. the bridge's own device) makes this device a child:
    ``root`` and ``parent`` are set to it.
    """
    ids = layout(device)
    function_endpoints: dict[str, int] = {}
    for _endpoint_id, function_code in ids.nodes:
        function_endpoints[function_code] = function_endpoints.get(function_code, 0) + 1
    nodes: dict[str, Any] = {}
    for endpoint in sorted(device.endpoints.values(), key=lambda e: e.id):
        for function in endpoint.functions.values():
            node_name = humanize(function.code)
            if function_endpoints[function.code] > 1:
                node_name = f"{node_name} {endpoint.id}"
            properties: dict[str, Any] = {}
            for trait in function.traits.values():
                address = TraitAddress(device.id, endpoint.id, function.code, trait.code)
                spec = trait.spec
                prop: dict[str, Any] = {
                    "name": trait_label(trait.code),
                    "datatype": datatype(spec),
                    "settable": spec.writable,
                    "retained": spec.readable,
                }
                fmt = value_format(spec)
                if fmt is not None:
                    prop["format"] = fmt
                unit = homie_unit(spec.unit)
                if unit is not None:
                    prop["unit"] = unit
                properties[ids.properties[address][1]] = prop
            nodes[ids.nodes[(endpoint.id, function.code)]] = {
                "name": node_name, "type": function.code, "properties": properties}
    if device.events:
        nodes[EVENTS_NODE] = {"name": "Events", "type": "events", "properties": {
            event_property(source): {
                "name": f"Button {source.button}", "datatype": "enum",
                "format": ",".join(source.event_types), "settable": False, "retained": False,
            } for source in device.events}}
    document: dict[str, Any] = {"homie": HOMIE_VERSION, "name": device.name or device.id,
                                "nodes": nodes}
    if parent is not None:
        document["root"] = parent
        document["parent"] = parent
    return document


def document_text(document: Any) -> str:
    """A description as published: compact, sorted keys (so equal documents are equal text)."""
    return json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False,
                      allow_nan=False)


class Versions:
    """Description versions that only grow, per Homie device id.

    The same document keeps its version; a changed one gets ``max(clock_ms(), last + 1)``: a
    millisecond clock keeps versions growing across restarts without any record, and the
    record (:meth:`dump`, given back as ``known``) keeps them growing when the clock does not
    (set back, or a board without a real-time clock).
    """

    def __init__(self, clock_ms: Callable[[], int],
                 known: Mapping[str, tuple[int, str]] | None = None) -> None:
        self.clock_ms = clock_ms
        self._known: dict[str, tuple[int, str]] = dict(known or {})
        self.dirty = False
        """True when a version changed since :meth:`dump`."""

    def stamp(self, homie_id: str, document: dict[str, Any]) -> dict[str, Any]:
        """``document`` with its ``version``."""
        digest = _digest(document_text(document), 16)
        last = self._known.get(homie_id)
        if last is not None and last[1] == digest:
            return {**document, "version": last[0]}
        version = max(self.clock_ms(), last[0] + 1 if last is not None else 0)
        self._known[homie_id] = (version, digest)
        self.dirty = True
        return {**document, "version": version}

    def dump(self) -> str:
        """The record as JSON (for :meth:`load`)."""
        self.dirty = False
        return json.dumps({key: list(value) for key, value in sorted(self._known.items())})

    @staticmethod
    def load(text: str) -> dict[str, tuple[int, str]]:
        """A record written by :meth:`dump` (ValueError when it is not one)."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        known: dict[str, tuple[int, str]] = {}
        for key, value in data.items():
            if not (isinstance(value, list) and len(value) == 2 and type(value[0]) is int
                    and isinstance(value[1], str)):
                raise ValueError(f"bad entry for {key!r}")
            known[key] = (value[0], value[1])
        return known


# ---- messages -----------------------------------------------------------------------------------


def homie_messages(device: Device, document: dict[str, Any],
                   convention: Convention = HOMIE5) -> dict[str, str]:
    """The description (``document``, with its version) and every known property value of
    ``device`` (all retained).

    ``$state`` is not included: the caller publishes :data:`INIT` before and :data:`READY` after
    these messages (and ``""`` to the state topic first when removing the device, then ``""``
    to each of these topics).
    """
    ids = layout(device)
    messages = convention.description_messages(ids.device_id, document)
    base = f"{convention.prefix}/{ids.device_id}"
    for address, trait in device.iter_traits():
        if not trait.spec.readable:
            continue
        payload = homie_value(trait.spec, trait.value)
        if payload is not None:
            node, prop = ids.properties[address]
            messages[f"{base}/{node}/{prop}"] = payload
    return messages


def value_message(device: Device, address: TraitAddress, convention: Convention = HOMIE5,
                  ) -> tuple[str, str] | None:
    """``(topic, payload)`` for one trait's current value (for live updates), or None."""
    trait = device.trait(address.endpoint_id, address.function_code, address.trait_code)
    if trait is None or not trait.spec.readable:
        return None
    payload = homie_value(trait.spec, trait.value)
    if payload is None:
        return None
    node, prop = layout(device).properties[address]
    return f"{convention.prefix}/{device_homie_id(device.id)}/{node}/{prop}", payload


def parse_homie_set(topic: str, convention: Convention = HOMIE5) -> tuple[str, str, str] | None:
    """``(device id, node id, property id)`` of ``<prefix>/<device>/<node>/<prop>/set``."""
    prefix = f"{convention.prefix}/"
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix):].split("/")
    if len(parts) != 4 or parts[3] != "set":
        return None
    device_id, node, prop = parts[:3]
    if not all(ID_PATTERN.fullmatch(part) for part in (device_id, node, prop)):
        return None
    return device_id, node, prop


def set_topic(device: Device, address: TraitAddress, convention: Convention = HOMIE5) -> str:
    """The Homie ``/set`` topic of a trait (the inverse of :func:`parse_homie_set`)."""
    node, prop = layout(device).properties[address]
    return f"{convention.prefix}/{device_homie_id(device.id)}/{node}/{prop}/set"


def resolve_set(device: Device, node: str, prop: str) -> TraitAddress | None:
    """The trait a Homie ``/set`` names on ``device``, or None (unknown node or property)."""
    return layout(device).addresses.get((node, prop))


def set_payload_text(payload: bytes | str) -> bytes | str:
    """A Homie ``/set`` payload ready for :func:`bridge.codec.decode_set` (NUL → empty string)."""
    if payload in (EMPTY_STRING, EMPTY_STRING.encode()):
        return '""'
    return payload
