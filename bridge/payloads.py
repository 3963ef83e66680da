"""The JSON documents the bridge publishes, as JSON-ready dicts (the caller serialises them,
e.g. with :func:`dumps`)."""

from __future__ import annotations

import json
from typing import Any, Literal

from bridge.codec import json_number, to_json_value
from bridge.model import Device, TraitAddress, TraitSpec, event_action
from bridge.topics import TopicScheme

MAX_LOGGED_PAYLOAD = 256
"""The longest payload quoted in a ``bridge/log`` entry, in characters."""


def dumps(document: Any) -> str:
    """Compact JSON text for a document (UTF-8 kept, NaN refused)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def device_state(device: Device) -> dict[str, dict[str, dict[str, Any]]]:
    """``{endpointId: {functionCode: {traitCode: value}}}`` of readable traits with a known value.

    Endpoint ids are string keys (JSON); values come from :func:`bridge.codec.to_json_value`
    (enum key labels, numbers as numbers). Empty functions and endpoints are left out.
    """
    state: dict[str, dict[str, dict[str, Any]]] = {}
    for endpoint in device.endpoints.values():
        functions: dict[str, dict[str, Any]] = {}
        for function in endpoint.functions.values():
            traits = {
                trait.code: to_json_value(trait.spec, trait.value)
                for trait in function.traits.values()
                if trait.spec.readable and trait.value is not None
            }
            if traits:
                functions[function.code] = traits
        if functions:
            state[str(endpoint.id)] = functions
    return state


def _spec_number(value: float | None) -> int | float | None:
    return None if value is None else json_number(value)


def trait_spec(spec: TraitSpec) -> dict[str, Any]:
    """A trait spec as JSON: type and flags always, other fields only when set."""
    doc: dict[str, Any] = {"type": str(spec.type)}
    if spec.format:
        doc["format"] = spec.format
    if spec.unit:
        doc["unit"] = spec.unit
    for name, number in (("min", spec.min), ("max", spec.max), ("step", spec.step)):
        value = _spec_number(number)
        if value is not None:
            doc[name] = value
    if spec.enums:
        doc["enums"] = [{"key": option.key, "value": option.value} for option in spec.enums]
    if spec.default is not None:
        doc["default"] = spec.default
    doc["readable"] = spec.readable
    doc["writable"] = spec.writable
    doc["subscribable"] = spec.subscribable
    return doc


def device_info(
    device: Device, friendly_name: str, topic_name: str, scheme: TopicScheme
) -> dict[str, Any]:
    """One device's entry in ``bridge/devices``, with the full topic of the device and each trait.

    ``device.extra`` entries are added after ``backend`` but never replace the fields above.
    Availability is not here (it has its own retained topic), so this list only changes when
    devices or their specs do.
    """
    doc: dict[str, Any] = {
        "id": device.id,
        "friendly_name": friendly_name,
        "topic": scheme.device(topic_name),
        "name": device.name,
        "model": device.model,
        "types": list(device.types),
        "backend": device.backend,
    }
    for key, value in device.extra.items():
        if key not in doc and key != "endpoints":
            doc[key] = value
    endpoints: list[dict[str, Any]] = []
    for endpoint in device.endpoints.values():
        functions: list[dict[str, Any]] = []
        for function in endpoint.functions.values():
            traits: list[dict[str, Any]] = []
            for trait in function.traits.values():
                entry: dict[str, Any] = {"code": trait.code}
                entry.update(trait_spec(trait.spec))
                address = TraitAddress(device.id, endpoint.id, function.code, trait.code)
                entry["topic"] = scheme.trait(topic_name, address)
                traits.append(entry)
            functions.append({"code": function.code, "traits": traits})
        endpoints.append({"id": endpoint.id, "types": list(endpoint.types), "functions": functions})
    doc["endpoints"] = endpoints
    if device.events:
        doc["events"] = device_events(device, topic_name, scheme)
    return doc


def device_events(device: Device, topic_name: str, scheme: TopicScheme) -> dict[str, Any]:
    """The momentary events a device fires: its event topic, and per source (button) the event
    types and the ``action`` each one is published with."""
    return {
        "topic": scheme.event(topic_name),
        "sources": [{"button": source.button, "endpoint": source.endpoint_id,
                     "event_types": list(source.event_types),
                     "actions": [event_action(device, source, kind)
                                 for kind in source.event_types]}
                    for source in device.events],
    }


def log_entry(
    level: str,
    message: str,
    topic: str | None = None,
    payload: str | bytes | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A ``bridge/log`` entry; a quoted payload is cut to :data:`MAX_LOGGED_PAYLOAD` characters
    (ending in ``…`` when cut; bytes are decoded with replacement characters)."""
    doc: dict[str, Any] = {"level": level, "message": message}
    if topic is not None:
        doc["topic"] = topic
    if payload is not None:
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
        if len(text) > MAX_LOGGED_PAYLOAD:
            text = text[: MAX_LOGGED_PAYLOAD - 1] + "…"
        doc["payload"] = text
    doc.update(extra)
    return doc


def response(
    status: Literal["ok", "error"],
    data: Any = None,
    error_code: int | str | None = None,
    error_message: str | None = None,
    transaction: Any = None,
) -> dict[str, Any]:
    """A ``bridge/response/<command>`` document: ``status`` and ``data``; ``error`` (code and
    message) only when the status is ``error``; ``transaction`` only when given."""
    doc: dict[str, Any] = {"status": status, "data": data}
    if status == "error":
        doc["error"] = {"code": error_code, "message": error_message or ""}
    if transaction is not None:
        doc["transaction"] = transaction
    return doc


def event(type: str, **fields: Any) -> dict[str, Any]:
    """A ``bridge/event`` document: ``{"type": type, **fields}``."""
    return {"type": type, **fields}
