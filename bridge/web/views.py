"""The JSON documents the page shows, built from the registry's entries (pure, no IO)."""

from __future__ import annotations

from typing import Any

from bridge.codec import string_label
from bridge.entries import DeviceEntry
from bridge.model import Trait, TraitAddress, TraitSpec, TraitType
from bridge.payloads import device_events, trait_spec
from bridge.topics import TopicScheme


def spec_json(spec: TraitSpec) -> dict[str, Any]:
    """What the page needs to draw a trait's control."""
    doc = trait_spec(spec)
    if spec.is_integer:
        doc["integer"] = True
    return doc


def value_label(spec: TraitSpec, value: Any) -> str | None:
    """What people read for an enum's wire value (its option's label, as MQTT and Home
    Assistant show it); None for other values."""
    if spec.type is not TraitType.ENUM or not isinstance(value, str):
        return None
    label = string_label(spec, value)
    return label if label != value else None


def device_summary(entry: DeviceEntry, last_change: float | None) -> dict[str, Any]:
    """A row of the device list."""
    device = entry.device
    return {
        "id": device.id,
        "name": device.name,
        "friendly_name": entry.friendly_name,
        "topic_name": entry.topic_name,
        "backend": entry.backend.name,
        "model": device.model,
        "room": device.extra.get("room"),
        "available": bool(entry.available),
        "last_change": last_change,
    }


def trait_json(entry: DeviceEntry, address: TraitAddress, trait: Trait,
               scheme: TopicScheme) -> dict[str, Any]:
    """One trait with its value (and an enum value's ``label``), spec and MQTT topic."""
    doc = {
        "path": address.path(),
        "endpoint": address.endpoint_id,
        "function": address.function_code,
        "trait": address.trait_code,
        "value": trait.value,
        "spec": spec_json(trait.spec),
        "topic": scheme.trait(entry.topic_name, address),
    }
    label = value_label(trait.spec, trait.value)
    if label is not None:
        doc["label"] = label
    return doc


def device_detail(entry: DeviceEntry, last_change: float | None,
                  entities: list[dict[str, Any]] | None, scheme: TopicScheme) -> dict[str, Any]:
    """The device page: the summary, every trait, the events it fires and its Home Assistant
    entities."""
    doc = device_summary(entry, last_change)
    doc["types"] = list(entry.device.types)
    doc["online"] = entry.device.online
    doc["traits"] = [trait_json(entry, address, trait, scheme)
                     for address, trait in entry.device.iter_traits()]
    doc["events"] = (device_events(entry.device, entry.topic_name, scheme)
                     if entry.device.events else None)
    doc["entities"] = entities
    return doc
