"""Tuya home / room / member management: one declared schema per MQTT command, validation, and
the REST call each command becomes.

Field names, types and required flags follow seed document 002 (the "action" API: ``home.add``,
``home.roomAddDevices``, ...); the REST paths follow protocols.md §3.2 (DOC, archived smart-home
page), except the room list/add/edit/delete paths and ``DELETE`` of room devices, which are
INFERRED (marked in each schema's ``source``). Adding a member is not in seed 002: its fields
(``country_code``, ``member_account``, ``admin``, ``name``, ``app_schema``) are INFERRED from the
REST twin ``POST /v1.0/homes/{home_id}/members``.

``uid`` is optional where the seed requires it for the user whose homes are bridged: it defaults to
the backend's configured ``uid``. Unknown fields are refused (a typo must not be dropped silently).
:func:`validate` raises :class:`~bridge.backends.base.RequestInvalid` naming the field before any
call is made; :func:`rest_call` maps validated params to method, path, query and body.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from bridge.backends.base import RequestInvalid

__all__ = [
    "TUYA_COMMANDS",
    "Field",
    "RestCall",
    "Schema",
    "describe",
    "rest_call",
    "validate",
]

FieldType = Literal["string", "integer", "number", "boolean", "string_list", "object"]


@dataclass(frozen=True, slots=True)
class Field:
    """One request field: JSON type, whether it is required, limits and nested fields."""

    name: str
    type: FieldType
    required: bool = True
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    fields: tuple[Field, ...] = ()
    """The fields of an ``object``."""
    default_from: str | None = None
    """Optional field filled from the backend's settings (``uid``) when absent."""

    def to_json(self) -> dict[str, Any]:
        """The field as a JSON-ready dict (for docs and ``bridge/request`` discovery)."""
        doc: dict[str, Any] = {"name": self.name, "type": self.type, "required": self.required}
        if self.description:
            doc["description"] = self.description
        if self.minimum is not None:
            doc["minimum"] = self.minimum
        if self.maximum is not None:
            doc["maximum"] = self.maximum
        if self.default_from:
            doc["default"] = f"the configured {self.default_from}"
        if self.fields:
            doc["fields"] = [f.to_json() for f in self.fields]
        return doc


@dataclass(frozen=True, slots=True)
class Schema:
    """One management command."""

    command: str
    action: str
    """The seed document's action name (``home.add``), or an INFERRED one."""
    method: Literal["GET", "POST", "PUT", "DELETE"]
    path: str
    """REST path with ``{field}`` placeholders taken from the params."""
    description: str
    fields: tuple[Field, ...]
    body: tuple[str, ...] = ()
    """Params sent in the JSON body (top-level names)."""
    query: tuple[str, ...] = ()
    """Params sent in the query string (lists joined by commas)."""
    mutates: bool = False
    """True when the command can change homes, rooms or the devices in them."""
    result: str = ""
    source: str = "SEED 002 + DOC §3.2"
    at_least_one: tuple[str, ...] = ()
    """At least one of these optional fields must be given."""
    body_wrap: str | None = None
    """Wrap these body params into one object field of this name (member/add: ``member``)."""
    body_outside: tuple[str, ...] = field(default=())
    """Body params left outside ``body_wrap``."""

    def to_json(self) -> dict[str, Any]:
        """The schema as a JSON-ready dict."""
        return {
            "command": self.command,
            "action": self.action,
            "description": self.description,
            "fields": [f.to_json() for f in self.fields],
            "rest": f"{self.method} {self.path}",
            "result": self.result,
            "source": self.source,
        }


HOME_ID = Field("home_id", "integer", description="The home ID.", minimum=1)
ROOM_ID = Field("room_id", "integer", description="The room ID.", minimum=1)
DEVICE_IDS = Field("device_ids", "string_list", description="Device IDs (at least one).")
USER = Field("uid", "string", required=False, default_from="uid",
             description="The Tuya user ID (default: the configured uid).")
MEMBER = Field("uid", "string", description="The member's Tuya user ID.")
LON = Field("lon", "number", required=False, description="Longitude.", minimum=-180,
            maximum=180)
LAT = Field("lat", "number", required=False, description="Latitude.", minimum=-90, maximum=90)
GEO = Field("geo_name", "string", required=False, description="Geographical location.")
HOME_FIELDS = (Field("name", "string", description="The name of the home."), GEO, LON, LAT)


def _schemas() -> dict[str, Schema]:
    items = [
        Schema("tuya/home/add", "home.add", "POST", "/v1.0/home/create-home",
               "Add a home (and rooms in it) to a user.",
               (USER, Field("home", "object", fields=HOME_FIELDS,
                            description="The home: name, geo_name, lon, lat."),
                Field("rooms", "string_list", required=False,
                      description="Names of rooms to create.")),
               body=("uid", "home", "rooms"), mutates=True, result="the new home_id"),
        Schema("tuya/home/edit", "home.edit", "PUT", "/v1.0/homes/{home_id}",
               "Modify a home's name, location or coordinates.",
               (HOME_ID, *(Field(f.name, f.type, False, f.description, f.minimum, f.maximum)
                           for f in HOME_FIELDS)),
               body=("name", "geo_name", "lon", "lat"), mutates=True, result="true",
               at_least_one=("name", "geo_name", "lon", "lat")),
        Schema("tuya/home/delete", "home.delete", "DELETE", "/v1.0/homes/{home_id}",
               "Delete a home.", (HOME_ID,), mutates=True, result="true"),
        Schema("tuya/home/get", "home.infos", "GET", "/v1.0/homes/{home_id}",
               "Query a home.", (HOME_ID,),
               result="{home_id, name, geo_name, lon, lat}"),
        Schema("tuya/home/devices", "home.devices", "GET", "/v1.0/homes/{home_id}/devices",
               "Query the devices in a home.", (HOME_ID,),
               result="[{id, name, category, product_id, online, status, ...}]"),
        Schema("tuya/room/add", "home.addRoom", "POST", "/v1.0/homes/{home_id}/room",
               "Add a room to a home.",
               (HOME_ID, Field("name", "string", description="The name of the room.")),
               body=("name",), mutates=True, result="the new room_id",
               source="SEED 002; path INFERRED"),
        Schema("tuya/room/edit", "home.editRoom", "PUT", "/v1.0/homes/{home_id}/rooms/{room_id}",
               "Rename a room.",
               (HOME_ID, ROOM_ID, Field("name", "string", description="The new room name.")),
               body=("name",), mutates=True, result="true", source="SEED 002; path INFERRED"),
        Schema("tuya/room/delete", "home.deleteRoom", "DELETE",
               "/v1.0/homes/{home_id}/rooms/{room_id}", "Delete a room.",
               (HOME_ID, ROOM_ID), mutates=True, result="true",
               source="SEED 002; path INFERRED"),
        Schema("tuya/room/list", "home.roomInfos", "GET", "/v1.0/homes/{home_id}/rooms",
               "Query a home and its rooms (home.roomList on the DOC page).", (HOME_ID,),
               result="{home_id, name, geo_name, lon, lat, rooms: [{room_id, name}]}",
               source="SEED 002; path INFERRED"),
        Schema("tuya/room/devices", "home.roomDevices", "GET",
               "/v1.0/homes/{home_id}/rooms/{room_id}/devices",
               "Query the devices in a room.", (HOME_ID, ROOM_ID),
               result="[{id, name, category, product_id, online, status, ...}]"),
        Schema("tuya/room/devices/add", "home.roomAddDevices", "POST",
               "/v1.0/homes/{home_id}/rooms/{room_id}/devices",
               "Add devices of the home to a room (moving them from their room).",
               (HOME_ID, ROOM_ID, DEVICE_IDS), body=("device_ids",), mutates=True,
               result="true"),
        Schema("tuya/room/devices/edit", "home.roomEditDevices", "PUT",
               "/v1.0/homes/{home_id}/rooms/{room_id}/devices",
               "Set the room's device list: the listed devices, no others.",
               (HOME_ID, ROOM_ID, DEVICE_IDS), body=("device_ids",), mutates=True,
               result="true"),
        Schema("tuya/room/devices/remove", "home.roomDeleteDevices", "DELETE",
               "/v1.0/homes/{home_id}/rooms/{room_id}/devices",
               "Remove devices from a room (they stay in the home).",
               (HOME_ID, ROOM_ID, DEVICE_IDS), body=("device_ids",), mutates=True,
               result="true",
               # DOC "Delete Devices from Room" (developer.tuya.com/en/docs/cloud/d3e25dfd74):
               # DELETE with the JSON body {"device_ids": [...]}; a list, as its request example
               # shows, INFERRED over the table's "IDs separated by commas".
               source="SEED 002; DOC: DELETE with a JSON body {\"device_ids\": [...]}"),
        Schema("tuya/member/add", "home.addMember", "POST", "/v1.0/homes/{home_id}/members",
               "Add a member to a home by account.",
               (HOME_ID,
                Field("country_code", "string", description="Country calling code, e.g. 86."),
                Field("member_account", "string",
                      description="The member's app account (phone or e-mail)."),
                Field("admin", "boolean", required=False,
                      description="Administrator (default false)."),
                Field("name", "string", required=False, description="Member's name in the home."),
                Field("app_schema", "string", required=False,
                      description="The app's schema (the app the account belongs to).")),
               body=("app_schema", "country_code", "member_account", "admin", "name"),
               body_wrap="member", body_outside=("app_schema",), mutates=True, result="true",
               source="INFERRED (REST twin of an action not in seed 002)"),
        Schema("tuya/member/authority", "home.memberAuthority", "PUT",
               "/v1.0/homes/{home_id}/members/{uid}",
               "Make a member an administrator or not.",
               (HOME_ID, MEMBER, Field("admin", "boolean", description="true: administrator.")),
               body=("admin",), mutates=True, result="true"),
        Schema("tuya/member/delete", "home.deleteMember", "DELETE",
               "/v1.0/homes/{home_id}/members/{uid}", "Remove a member from a home.",
               (HOME_ID, MEMBER), mutates=True, result="true"),
        Schema("tuya/member/list", "home.memberList", "GET", "/v1.0/homes/{home_id}/members",
               "Query the members of a home.", (HOME_ID,),
               result="[{uid, name, admin, country_code, member_account}]"),
        Schema("tuya/member/homes", "home.memberHomeList", "GET", "/v1.0/users/{uid}/homes",
               "Query all homes of a user (home.memberInfos on the DOC page).", (USER,),
               result="[{home_id, name, geo_name, lon, lat}]"),
    ]
    return {schema.command: schema for schema in items}


TUYA_COMMANDS: dict[str, Schema] = _schemas()
"""Every management command of the Tuya backend, by MQTT command name."""


def describe() -> list[dict[str, Any]]:
    """Every command's schema as JSON (for generated docs)."""
    return [schema.to_json() for schema in TUYA_COMMANDS.values()]


@dataclass(frozen=True, slots=True)
class RestCall:
    """A request ready to sign and send."""

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None


# ---- validation -------------------------------------------------------------------------------


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _check(spec: Field, value: Any, where: str) -> Any:
    kind = spec.type
    if kind == "string":
        if not isinstance(value, str):
            raise RequestInvalid(where, f"must be a string (got {_kind(value)})")
        text = value.strip()
        if not text:
            raise RequestInvalid(where, "must not be empty")
        return text
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RequestInvalid(where, f"must be an integer (got {_kind(value)})")
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise RequestInvalid(where, f"must be an integer (got {value!r})")
        number = int(value)
        if spec.minimum is not None and number < spec.minimum:
            raise RequestInvalid(where, f"must be at least {spec.minimum:g} (got {number})")
        return number
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RequestInvalid(where, f"must be a number (got {_kind(value)})")
        if not math.isfinite(value):
            raise RequestInvalid(where, "must be a finite number")
        if spec.minimum is not None and value < spec.minimum:
            raise RequestInvalid(where, f"must be at least {spec.minimum:g} (got {value:g})")
        if spec.maximum is not None and value > spec.maximum:
            raise RequestInvalid(where, f"must be at most {spec.maximum:g} (got {value:g})")
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise RequestInvalid(where, f"must be true or false (got {_kind(value)})")
        return value
    if kind == "string_list":
        if not isinstance(value, list):
            raise RequestInvalid(where, f"must be a list of strings (got {_kind(value)})")
        items: list[str] = []
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise RequestInvalid(f"{where}[{index}]", "must be a non-empty string")
            items.append(item.strip())
        if spec.required and not items:
            raise RequestInvalid(where, "must list at least one item")
        if len(set(items)) != len(items):
            raise RequestInvalid(where, "lists an item twice")
        return items
    if not isinstance(value, Mapping):
        raise RequestInvalid(where, f"must be an object (got {_kind(value)})")
    return _check_fields(spec.fields, value, where + ".", {})


def _check_fields(fields: tuple[Field, ...], args: Mapping[str, Any], prefix: str,
                  defaults: Mapping[str, Any]) -> dict[str, Any]:
    known = {f.name for f in fields}
    for key in args:
        if key not in known:
            allowed = ", ".join(f.name for f in fields) or "none"
            raise RequestInvalid(f"{prefix}{key}", f"unknown field (allowed: {allowed})")
    out: dict[str, Any] = {}
    for spec in fields:
        where = prefix + spec.name
        value = args.get(spec.name)
        if value is None:
            if spec.default_from and defaults.get(spec.default_from) is not None:
                out[spec.name] = defaults[spec.default_from]
                continue
            if spec.required or spec.default_from:
                raise RequestInvalid(where, "field required")
            continue
        out[spec.name] = _check(spec, value, where)
    return out


def validate(command: str, args: Mapping[str, Any] | None,
             defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Checked and normalised params of ``command``; RequestInvalid naming the field if not.

    ``defaults`` fills optional fields marked ``default_from`` (e.g. ``{"uid": "ay…"}``).
    """
    schema = TUYA_COMMANDS.get(command)
    if schema is None:
        raise RequestInvalid("command", f"unknown Tuya command {command!r} (known: "
                             + ", ".join(TUYA_COMMANDS) + ")")
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise RequestInvalid("args", f"must be a JSON object (got {_kind(args)})")
    params = _check_fields(schema.fields, args, "", defaults or {})
    if schema.at_least_one and not any(name in params for name in schema.at_least_one):
        raise RequestInvalid(schema.at_least_one[0], "give at least one of "
                             + ", ".join(schema.at_least_one) + " to change")
    return params


def rest_call(command: str, params: Mapping[str, Any]) -> RestCall:
    """The REST request for validated ``params`` (see :func:`validate`)."""
    schema = TUYA_COMMANDS[command]
    path = schema.path
    for name in [f.name for f in schema.fields]:
        token = "{" + name + "}"
        if token in path:
            path = path.replace(token, quote(str(params[name]), safe=""))
    query = {name: ",".join(params[name]) if isinstance(params[name], list) else str(params[name])
             for name in schema.query if name in params}
    body: dict[str, Any] | None = None
    if schema.body:
        body = {name: params[name] for name in schema.body if name in params}
        if schema.body_wrap is not None:
            inner = {k: v for k, v in body.items() if k not in schema.body_outside}
            body = {k: v for k, v in body.items() if k in schema.body_outside}
            body[schema.body_wrap] = inner
    elif schema.method in ("POST", "PUT"):
        body = {}
    return RestCall(schema.method, path, query, body)
