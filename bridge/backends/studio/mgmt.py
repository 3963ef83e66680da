"""Studio management requests (history, script automations): API arguments ↔ Data Export API.

Pure translation, no IO. The request shapes of these types are not published by Aqara; what is
used here is INFERRED and matches the bundled simulator (see ``bridge/simulators/studio.py``):
responses are read tolerantly (``data``/``list`` for lists, ``automationId``/``id`` for ids).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.backends.aqara_spec import first
from bridge.backends.base import BackendError
from bridge.codec import from_wire, to_json_value
from bridge.model import TraitSpec


@dataclass(frozen=True, slots=True)
class WireRequest:
    """One Data Export API request: its ``type`` and ``data``."""

    type: str
    data: Any


def history_request(args: Mapping[str, Any]) -> WireRequest:
    """QueryDeviceHistoryDataRequest for validated ``history`` arguments."""
    return WireRequest("QueryDeviceHistoryDataRequest", {
        "deviceId": args["device_id"], "endpointId": args["endpoint_id"],
        "functionCode": args["function_code"], "traitCode": args["trait_code"],
        "startTime": args["start"], "endTime": args["end"], "pageNum": args["page"],
        "pageSize": args["page_size"], "orderBy": f"time {args['order']}",
    })


def _items(data: Any) -> list[Mapping[str, Any]]:
    raw = first(data, "data", "list", "items", default=[]) if isinstance(data, Mapping) else data
    if not isinstance(raw, list):
        raise BackendError("the hub answered with an unexpected shape (no list of items)")
    return [item for item in raw if isinstance(item, Mapping)]


def _total(data: Any, items: list[Mapping[str, Any]]) -> int:
    total = first(data, "totalCount", "total") if isinstance(data, Mapping) else None
    return int(total) if isinstance(total, int | str) and str(total).isdigit() else len(items)


def history_result(data: Any, spec: TraitSpec, page: int, page_size: int) -> dict[str, Any]:
    """The API's ``history`` answer: values rendered like the trait's retained topic."""
    items = _items(data)
    samples = []
    for item in items:
        try:
            value = to_json_value(spec, from_wire(spec, item.get("value")))
        except ValueError:
            value = item.get("value")
        samples.append({"time": item.get("time"), "value": value})
    return {"total": _total(data, items), "page": page, "page_size": page_size,
            "samples": samples}


def automation_request(command: str, args: Mapping[str, Any]) -> WireRequest:
    """The Data Export API request for one ``automation/*`` command."""
    if command == "automation/capabilities":
        return WireRequest("QueryAutomationCapabilitiesRequest", {})
    if command == "automation/list":
        return WireRequest("GetScriptAutomationListRequest",
                           {"pageNum": args["page"], "pageSize": args["page_size"]})
    if command == "automation/get":
        return WireRequest("GetScriptAutomationDetailsRequest", {"automationId": args["id"]})
    if command == "automation/create":
        return WireRequest("CreateScriptAutomationRequest",
                           {"script": args["script"], "enabled": args["enabled"]})
    if command == "automation/update":
        data: dict[str, Any] = {"automationId": args["id"]}
        for ours, theirs in (("script", "script"), ("name", "name"), ("enabled", "enabled")):
            if args.get(ours) is not None:
                data[theirs] = args[ours]
        return WireRequest("UpdateScriptAutomationRequest", data)
    if command == "automation/delete":
        return WireRequest("DeleteAutomationRequest", {"automationIds": [args["id"]]})
    raise BackendError(f"command {command!r} is not supported by the studio backend")


def _automation(item: Mapping[str, Any]) -> dict[str, Any]:
    summary = {
        "id": str(first(item, "automationId", "id", default="")),
        "name": first(item, "name"),
        "enabled": first(item, "enabled", "enable"),
        "created": first(item, "createTime"),
        "updated": first(item, "updateTime"),
    }
    if "script" in item:
        summary["script"] = item["script"]
    return summary


def automation_result(command: str, data: Any, args: Mapping[str, Any]) -> Any:
    """The API's answer for one ``automation/*`` command, in the API's field names."""
    if command == "automation/capabilities":
        return data
    if command == "automation/list":
        items = _items(data)
        return {"total": _total(data, items), "page": args["page"],
                "page_size": args["page_size"], "automations": [_automation(i) for i in items]}
    if command == "automation/get":
        if not isinstance(data, Mapping):
            raise BackendError("the hub answered with an unexpected shape (no automation)")
        return _automation(data)
    if command in ("automation/create", "automation/update"):
        automation_id = first(data, "automationId", "id") if isinstance(data, Mapping) else data
        return {"id": str(automation_id if automation_id is not None else args.get("id", ""))}
    return {"id": args["id"], "deleted": True}
