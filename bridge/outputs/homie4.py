"""Homie 4.0 attribute topics, derived from a device's Homie 5 description (pure, sans-IO).

Homie 4 (what openHAB's Homie binding discovers, on ``+/+/$homie``) carries the description as
one retained topic per attribute instead of one JSON document::

    homie/<device-id>/$homie, $name, $state, $nodes
    homie/<device-id>/<node-id>/$name, $type, $properties
    homie/<device-id>/<node-id>/<prop-id>/$name, $datatype, $settable, $retained[, $format, $unit]

Ids, values and ``/set`` are the Homie 5 ones (see :mod:`bridge.outputs.homie`). What Homie 4
lacks is mapped: ``json`` is a ``string``; a number's format is ``min:max`` only (Homie 4 has no
step or open range, and openHAB reads a range only from exactly two parts); a boolean has no
format; Homie 5's mired spelling ``MK⁻¹`` becomes ``mired`` (Homie 4 names no unit for it, and
that is how openHAB spells the unit).
"""

from __future__ import annotations

from typing import Any

HOMIE4_VERSION = "4.0.0"
"""The ``$homie`` attribute (openHAB accepts any value starting with ``3`` or ``4``)."""

_DATATYPES = {"json": "string"}
_UNITS = {"MK⁻¹": "mired"}


def _format(prop: dict[str, Any], datatype: str) -> str | None:
    fmt = prop.get("format")
    if fmt is None:
        return None
    if datatype in ("integer", "float"):
        low, high = fmt.split(":")[:2]
        return f"{low}:{high}" if low and high else None
    return fmt if datatype == "enum" else None


def _property_messages(topic: str, prop: dict[str, Any]) -> dict[str, str]:
    datatype = _DATATYPES.get(prop["datatype"], prop["datatype"])
    messages = {
        f"{topic}/$name": prop["name"],
        f"{topic}/$datatype": datatype,
        f"{topic}/$settable": "true" if prop.get("settable") else "false",
        f"{topic}/$retained": "true" if prop.get("retained", True) else "false",
    }
    fmt = _format(prop, datatype)
    if fmt is not None:
        messages[f"{topic}/$format"] = fmt
    unit = prop.get("unit")
    if unit:
        messages[f"{topic}/$unit"] = _UNITS.get(unit, unit)
    return messages


def attribute_messages(base: str, document: dict[str, Any]) -> dict[str, str]:
    """Every Homie 4 attribute topic (but ``$state``) of the device at ``base``, from its
    Homie 5 ``$description`` document."""
    nodes: dict[str, Any] = document["nodes"]
    messages = {f"{base}/$homie": HOMIE4_VERSION, f"{base}/$name": document["name"],
                f"{base}/$nodes": ",".join(nodes)}
    for node_id, node in nodes.items():
        node_topic = f"{base}/{node_id}"
        messages[f"{node_topic}/$name"] = node["name"]
        messages[f"{node_topic}/$type"] = node["type"]
        messages[f"{node_topic}/$properties"] = ",".join(node["properties"])
        for prop_id, prop in node["properties"].items():
            messages.update(_property_messages(f"{node_topic}/{prop_id}", prop))
    return messages
