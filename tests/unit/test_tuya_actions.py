"""Tuya management commands: declared schemas, validation before any call, REST mapping."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.backends.base import RequestInvalid
from bridge.backends.tuya.actions import TUYA_COMMANDS, describe, rest_call, validate

UID = "ay1528964101460qLVPu"
DEFAULTS = {"uid": UID}

EXPECTED_COMMANDS = {
    "tuya/home/add", "tuya/home/edit", "tuya/home/delete", "tuya/home/get", "tuya/home/devices",
    "tuya/room/add", "tuya/room/edit", "tuya/room/delete", "tuya/room/list", "tuya/room/devices",
    "tuya/room/devices/add", "tuya/room/devices/edit", "tuya/room/devices/remove",
    "tuya/member/add", "tuya/member/authority", "tuya/member/delete", "tuya/member/list",
    "tuya/member/homes",
}

# command, args, (method, path, query, body)
CALLS: list[tuple[str, dict[str, Any], tuple[str, str, dict[str, str], Any]]] = [
    ("tuya/home/add",
     {"home": {"name": "My Home", "geo_name": "Xihu District, Hangzhou", "lat": 30.1624,
               "lon": 120.545}, "rooms": ["Kitchen", "Bathroom"]},
     ("POST", "/v1.0/home/create-home", {},
      {"uid": UID, "home": {"name": "My Home", "geo_name": "Xihu District, Hangzhou",
                            "lat": 30.1624, "lon": 120.545}, "rooms": ["Kitchen", "Bathroom"]})),
    ("tuya/home/add", {"uid": "other", "home": {"name": " Flat "}},
     ("POST", "/v1.0/home/create-home", {}, {"uid": "other", "home": {"name": "Flat"}})),
    ("tuya/home/edit", {"home_id": 3182004, "geo_name": "Hangzhou", "lat": 30.1624},
     ("PUT", "/v1.0/homes/3182004", {}, {"geo_name": "Hangzhou", "lat": 30.1624})),
    ("tuya/home/delete", {"home_id": 3182004}, ("DELETE", "/v1.0/homes/3182004", {}, None)),
    ("tuya/home/get", {"home_id": 3182004}, ("GET", "/v1.0/homes/3182004", {}, None)),
    ("tuya/home/devices", {"home_id": 3182004},
     ("GET", "/v1.0/homes/3182004/devices", {}, None)),
    ("tuya/room/add", {"home_id": 3182004, "name": "Kitchen"},
     ("POST", "/v1.0/homes/3182004/room", {}, {"name": "Kitchen"})),
    ("tuya/room/edit", {"home_id": 3182004, "room_id": 1408001, "name": "Kitchen"},
     ("PUT", "/v1.0/homes/3182004/rooms/1408001", {}, {"name": "Kitchen"})),
    ("tuya/room/delete", {"home_id": 3182004, "room_id": 1408001},
     ("DELETE", "/v1.0/homes/3182004/rooms/1408001", {}, None)),
    ("tuya/room/list", {"home_id": 3182004}, ("GET", "/v1.0/homes/3182004/rooms", {}, None)),
    ("tuya/room/devices", {"home_id": 3182004, "room_id": 1408001},
     ("GET", "/v1.0/homes/3182004/rooms/1408001/devices", {}, None)),
    ("tuya/room/devices/add",
     {"home_id": 3182004, "room_id": 74332323, "device_ids": ["ve23u92932", "ve23u929321"]},
     ("POST", "/v1.0/homes/3182004/rooms/74332323/devices", {},
      {"device_ids": ["ve23u92932", "ve23u929321"]})),
    ("tuya/room/devices/edit", {"home_id": 1, "room_id": 2, "device_ids": ["a"]},
     ("PUT", "/v1.0/homes/1/rooms/2/devices", {}, {"device_ids": ["a"]})),
    ("tuya/room/devices/remove", {"home_id": 1, "room_id": 2, "device_ids": ["a", "b"]},
     ("DELETE", "/v1.0/homes/1/rooms/2/devices", {}, {"device_ids": ["a", "b"]})),
    ("tuya/member/add",
     {"home_id": 1, "country_code": "86", "member_account": "13912345678", "admin": True,
      "name": "Li", "app_schema": "tuyasmart"},
     ("POST", "/v1.0/homes/1/members", {},
      {"app_schema": "tuyasmart", "member": {"country_code": "86",
                                             "member_account": "13912345678", "admin": True,
                                             "name": "Li"}})),
    ("tuya/member/authority", {"home_id": 3182004, "uid": "ay15309353754999xY2T", "admin": False},
     ("PUT", "/v1.0/homes/3182004/members/ay15309353754999xY2T", {}, {"admin": False})),
    ("tuya/member/delete", {"home_id": 3182004, "uid": "ay15309353754999xY2T"},
     ("DELETE", "/v1.0/homes/3182004/members/ay15309353754999xY2T", {}, None)),
    ("tuya/member/list", {"home_id": 3182004}, ("GET", "/v1.0/homes/3182004/members", {}, None)),
    ("tuya/member/homes", {}, ("GET", f"/v1.0/users/{UID}/homes", {}, None)),
    ("tuya/member/homes", {"uid": "ay15309353754999xY2T"},
     ("GET", "/v1.0/users/ay15309353754999xY2T/homes", {}, None)),
]


def test_every_command_is_declared() -> None:
    assert set(TUYA_COMMANDS) == EXPECTED_COMMANDS
    assert {c for c, _a, _e in CALLS} == EXPECTED_COMMANDS
    for command, schema in TUYA_COMMANDS.items():
        assert schema.command == command
        assert schema.action.startswith("home.")
        assert schema.fields
        assert schema.description


def test_describe_is_json() -> None:
    docs = describe()
    assert len(docs) == len(EXPECTED_COMMANDS)
    text = json.dumps(docs)
    assert "geo_name" in text
    assert "device_ids" in text
    add = next(d for d in docs if d["command"] == "tuya/home/add")
    assert add["action"] == "home.add"
    assert add["rest"] == "POST /v1.0/home/create-home"
    home = next(f for f in add["fields"] if f["name"] == "home")
    assert [f["name"] for f in home["fields"]] == ["name", "geo_name", "lon", "lat"]
    uid = next(f for f in add["fields"] if f["name"] == "uid")
    assert uid["required"] is False
    assert "uid" in uid["default"]


@pytest.mark.parametrize(("command", "args", "expected"), CALLS)
def test_rest_mapping(command: str, args: dict[str, Any],
                      expected: tuple[str, str, dict[str, str], Any]) -> None:
    call = rest_call(command, validate(command, args, DEFAULTS))
    assert (call.method, call.path, call.query, call.body) == expected


def test_ids_in_paths_are_quoted() -> None:
    call = rest_call("tuya/member/delete",
                     validate("tuya/member/delete", {"home_id": 1, "uid": "a/b c"}))
    assert call.path == "/v1.0/homes/1/members/a%2Fb%20c"


def test_integral_floats_are_integers() -> None:
    assert validate("tuya/home/get", {"home_id": 3182004.0})["home_id"] == 3182004


BAD: list[tuple[str, Any, str, str]] = [
    ("tuya/home/get", {}, "home_id", "field required"),
    ("tuya/home/get", {"home_id": "3182004"}, "home_id", "must be an integer (got a string)"),
    ("tuya/home/get", {"home_id": True}, "home_id", "must be an integer (got a boolean)"),
    ("tuya/home/get", {"home_id": 1.5}, "home_id", "must be an integer"),
    ("tuya/home/get", {"home_id": 0}, "home_id", "at least 1"),
    ("tuya/home/get", {"home_id": 1, "room_id": 2}, "room_id", "unknown field"),
    ("tuya/home/get", [1], "args", "must be a JSON object"),
    ("tuya/home/add", {"home": {"geo_name": "x"}}, "home.name", "field required"),
    ("tuya/home/add", {"home": "My Home"}, "home", "must be an object"),
    ("tuya/home/add", {"home": {"name": "  "}}, "home.name", "must not be empty"),
    ("tuya/home/add", {"home": {"name": "h", "lat": 91}}, "home.lat", "at most 90"),
    ("tuya/home/add", {"home": {"name": "h", "lon": "east"}}, "home.lon", "must be a number"),
    ("tuya/home/add", {"home": {"name": "h", "flag": 1}}, "home.flag", "unknown field"),
    ("tuya/home/add", {"home": {"name": "h"}, "rooms": "Kitchen"}, "rooms",
     "must be a list of strings"),
    ("tuya/home/add", {"home": {"name": "h"}, "rooms": ["a", 2]}, "rooms[1]", "non-empty string"),
    ("tuya/home/edit", {"home_id": 1}, "name", "give at least one of"),
    ("tuya/room/add", {"home_id": 1}, "name", "field required"),
    ("tuya/room/edit", {"home_id": 1, "name": "x"}, "room_id", "field required"),
    ("tuya/room/devices/add", {"home_id": 1, "room_id": 2, "device_ids": []}, "device_ids",
     "at least one"),
    ("tuya/room/devices/add", {"home_id": 1, "room_id": 2, "device_ids": ["a", "a"]},
     "device_ids", "twice"),
    ("tuya/room/devices/remove", {"home_id": 1, "room_id": 2}, "device_ids", "field required"),
    ("tuya/member/add", {"home_id": 1, "country_code": "86"}, "member_account", "field required"),
    ("tuya/member/add", {"home_id": 1, "country_code": 86, "member_account": "x"},
     "country_code", "must be a string"),
    ("tuya/member/authority", {"home_id": 1, "uid": "u", "admin": "yes"}, "admin",
     "true or false"),
    ("tuya/member/authority", {"home_id": 1, "uid": "u"}, "admin", "field required"),
    ("tuya/member/delete", {"home_id": 1}, "uid", "field required"),
    ("tuya/nope", {}, "command", "unknown Tuya command"),
]


@pytest.mark.parametrize(("command", "args", "field", "message"), BAD)
def test_invalid_requests_name_the_field(command: str, args: Any, field: str,
                                         message: str) -> None:
    with pytest.raises(RequestInvalid) as caught:
        validate(command, args, DEFAULTS)
    assert caught.value.field == field
    assert message in caught.value.message
    assert caught.value.code == "invalid_request"


def test_uid_is_required_without_a_default() -> None:
    with pytest.raises(RequestInvalid) as caught:
        validate("tuya/member/homes", {})
    assert caught.value.field == "uid"
