"""The Aqara Studio simulator over real sockets (websockets client for WS, aiohttp for HTTP)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bridge.simulators.sample_home import sample_home, synthetic_devices, thermostat
from bridge.simulators.studio import UNAUTHORIZED_BODY, StudioSimulator, serve
from tests import studio_client
from tests.mqtt_probe import eventually
from tests.studio_client import NO_DATA, TIMEOUT, Client

pytestmark = pytest.mark.integration

TOKEN = "sim-token-123"
SWITCH = "lumi1.54ef448a0b73"  # double rocker, eps 2 and 3 Output.OnOff
LIGHT = "lumi1.54ef44d1e6a0"
THERMO = "lumi1.54ef448cc210"
OFFLINE = "lumi.158d00045a1b2c"
LOCK = "aqara.lock.7f3e9a01c2"
HUB = "lumi1.54ef44100000"


@pytest.fixture
async def sim() -> AsyncIterator[StudioSimulator]:
    s = StudioSimulator(TOKEN, sample_home())
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def connect(sim: StudioSimulator, auth: str | None = f"Bearer {TOKEN}",
            **kwargs: Any) -> contextlib.AbstractAsyncContextManager[Client]:
    return studio_client.connect(sim, auth, **kwargs)


async def http_post(
    sim: StudioSimulator, body: Any, auth: str | None = f"Bearer {TOKEN}", path: str = ""
) -> tuple[int, bytes]:
    headers = {"Authorization": auth} if auth is not None else {}
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as session,
        session.post(sim.api_endpoint + path, data=payload, headers=headers) as resp,
    ):
        return resp.status, await resp.read()


def req(rtype: str, data: Any = NO_DATA, msg_id: str = "h-1") -> dict[str, Any]:
    msg: dict[str, Any] = {"type": rtype, "version": "v1", "msgId": msg_id}
    if data is not NO_DATA:
        msg["data"] = data
    return msg


def trait_update(device: str, ep: int, fn: str, trait: str, value: Any) -> dict[str, Any]:
    return {
        "deviceId": device,
        "endpointId": ep,
        "functionCode": fn,
        "traitCode": trait,
        "value": value,
    }


# ------------------------------------------------------------------------------------ auth


@pytest.mark.parametrize("auth", [f"Bearer {TOKEN}", TOKEN, f"bearer {TOKEN}"])
async def test_ws_accepts_token_with_or_without_bearer(sim: StudioSimulator, auth: str) -> None:
    async with connect(sim, auth) as client:
        reply = await client.request("GetAllDeviceInfoRequest")
        assert reply["code"] == 0
        assert len(reply["data"]) == 24
        assert client.ws.subprotocol is None
        assert sim.connections == 1


async def test_ws_echoes_the_subprotocol_when_offered(sim: StudioSimulator) -> None:
    async with connect(sim, subprotocols=["aqara-studio-v1"]) as client:
        assert client.ws.subprotocol == "aqara-studio-v1"
        assert (await client.request("GetAllDeviceInfoRequest"))["code"] == 0


@pytest.mark.parametrize(
    "auth",
    [None, "", "Bearer wrong", "Bearer", f"Basic {TOKEN}", f"Bearer Bearer {TOKEN}", f"{TOKEN}x"],
)
async def test_ws_refuses_bad_tokens_with_401(sim: StudioSimulator, auth: str | None) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(sim, auth):
            pass
    assert info.value.response.status_code == 401
    assert json.loads(info.value.response.body or b"") == UNAUTHORIZED_BODY
    assert sim.connections == 0


@pytest.mark.parametrize("auth", [None, "Bearer wrong", f"Token {TOKEN}"])
async def test_http_refuses_bad_tokens_with_401(sim: StudioSimulator, auth: str | None) -> None:
    status, body = await http_post(sim, req("GetAllDeviceInfoRequest"), auth)
    assert status == 401
    assert json.loads(body) == {
        "type": "ErrorMessage",
        "version": "v1",
        "msgId": "UNKNOWN",
        "code": 1001,
        "message": "Unauthorized: invalid or expired token",
    }
    assert sim.received == []


@pytest.mark.parametrize("auth", [f"Bearer {TOKEN}", TOKEN])
async def test_http_accepts_token_with_or_without_bearer(sim: StudioSimulator, auth: str) -> None:
    status, body = await http_post(sim, req("GetAllDeviceInfoRequest", msg_id="x7"), auth)
    assert status == 200
    reply = json.loads(body)
    assert reply["type"] == "GetAllDeviceInfoResponse"
    assert (reply["msgId"], reply["code"], reply["message"]) == ("x7", 0, "Success")


async def test_refresh_token_adds_a_new_valid_token(sim: StudioSimulator) -> None:
    status, body = await http_post(sim, b"", path="/auth/refresh-token")
    assert status == 200
    reply = json.loads(body)
    assert reply["code"] == 0
    assert reply["message"] == "Success"
    assert reply["data"]["expiresIn"] == 604800
    new = reply["data"]["token"]
    assert isinstance(new, str)
    assert new
    assert new != TOKEN

    status, _ = await http_post(sim, req("GetAllDeviceInfoRequest"), f"Bearer {new}")
    assert status == 200
    status, _ = await http_post(sim, req("GetAllDeviceInfoRequest"), TOKEN)
    assert status == 200
    async with connect(sim, new) as client:
        assert (await client.request("GetAllDeviceInfoRequest"))["code"] == 0

    status, _ = await http_post(sim, b"", auth="Bearer nope", path="/auth/refresh-token")
    assert status == 401


# ------------------------------------------------------------------------------------ envelope


BAD_MESSAGES = [
    "{not json",
    "",
    "[1, 2]",
    '"GetAllDeviceInfoRequest"',
    '{"version": "v1", "msgId": "a"}',
    '{"type": 5, "version": "v1", "msgId": "a"}',
    '{"type": "GetDeviceInfo", "version": "v1", "msgId": "a"}',
    '{"type": "QueryDeviceHistoryDataRequest", "version": "v1", "msgId": "a"}',
    '{"type": "GetAllDeviceInfoResponse", "version": "v1", "msgId": "a"}',
    '{"type": "GetAllDeviceInfoRequest", "version": "v1"}',
    '{"type": "GetAllDeviceInfoRequest", "version": "v1", "msgId": 17}',
    '{"type": "GetAllDeviceInfoRequest", "version": "v2", "msgId": "a"}',
    '{"type": "GetAllDeviceInfoRequest", "msgId": "a"}',
]


@pytest.mark.parametrize("text", BAD_MESSAGES)
async def test_ws_parse_failures_answer_error_message(sim: StudioSimulator, text: str) -> None:
    async with connect(sim) as client:
        reply = await client.send_raw(text)
        assert set(reply) == {"type", "version", "msgId", "code", "message"}
        assert reply["type"] == "ErrorMessage"
        assert (reply["version"], reply["msgId"], reply["code"]) == ("v1", "UNKNOWN", 1000)
        assert reply["message"].startswith("Message parsing failed: ")
        # The connection stays usable.
        assert (await client.request("GetAllDeviceInfoRequest"))["code"] == 0


async def test_http_parse_failure_answers_error_message(sim: StudioSimulator) -> None:
    status, body = await http_post(sim, b"\xff\xfe not json")
    assert status == 200
    reply = json.loads(body)
    assert (reply["type"], reply["msgId"], reply["code"]) == ("ErrorMessage", "UNKNOWN", 1000)


BAD_DATA = [
    ("GetDeviceInfoRequest", {"pageSize": 0}, "pageSize"),
    ("GetDeviceInfoRequest", {"pageSize": 201}, "pageSize"),
    ("GetDeviceInfoRequest", {"pageSize": "10"}, "pageSize"),
    ("GetDeviceInfoRequest", {"pageNum": 1.5}, "pageNum"),
    ("GetDeviceInfoRequest", {"orderBy": "name asc"}, "orderBy"),
    ("GetDeviceInfoRequest", {"deviceTypesList": "Light"}, "deviceTypesList"),
    ("GetDeviceInfoRequest", [], "data"),
    ("GetDevicesRequest", {"deviceIds": "lumi.1"}, "deviceIds"),
    ("GetDevicesRequest", {"deviceIds": [1, 2]}, "deviceIds"),
    ("GetTraitValueRequest", {"deviceId": SWITCH}, "data"),
    (
        "GetTraitValueRequest",
        [{"deviceId": SWITCH, "functionCode": "Output", "traitCodes": ["OnOff"]}],
        "endpointId",
    ),
    (
        "GetTraitValueRequest",
        [{"deviceId": SWITCH, "endpointId": 2, "functionCode": "Output", "traitCodes": "OnOff"}],
        "traitCodes",
    ),
    ("ExecuteTraitRequest", [], "data"),
    ("ExecuteTraitRequest", NO_DATA, "data"),
    (
        "ExecuteTraitRequest",
        [
            {
                "deviceId": SWITCH,
                "endpointId": "2",
                "functionCode": "Output",
                "traitCode": "OnOff",
                "value": True,
            }
        ],
        "endpointId",
    ),
    (
        "ExecuteTraitRequest",
        [{"deviceId": SWITCH, "endpointId": 2, "functionCode": "Output", "traitCode": "OnOff"}],
        "value",
    ),
    ("SubscribeTraitValueRequest", {"deviceId": SWITCH}, "data"),
]


@pytest.mark.parametrize(("rtype", "data", "field"), BAD_DATA)
async def test_bad_data_answers_code_400(
    sim: StudioSimulator, rtype: str, data: Any, field: str
) -> None:
    async with connect(sim) as client:
        reply = await client.request(rtype, data)
        assert reply["code"] == 400
        assert reply["data"] is None
        assert field in reply["message"]
    assert sim.get_value(SWITCH, 2, "Output", "OnOff") is False


# ------------------------------------------------------------------------------------ queries


async def test_get_device_info_paging_and_ordering(sim: StudioSimulator) -> None:
    async with connect(sim) as client:
        full = (await client.request("GetDeviceInfoRequest", {}))["data"]
        assert (full["totalCount"], full["pageNum"], full["pageSize"]) == (24, 1, 200)
        entries = full["data"]
        assert len(entries) == 24
        assert set(entries[0]) == {
            "deviceId",
            "deviceName",
            "deviceTypesList",
            "createTime",
            "state",
            "model",
        }
        times = [e["createTime"] for e in entries]
        assert times == sorted(times)
        assert len(set(times)) == 24

        seen: list[str] = []
        for page in range(1, 6):
            data = (
                await client.request(
                    "GetDeviceInfoRequest",
                    {"pageNum": page, "pageSize": 5, "orderBy": "createTime desc"},
                )
            )["data"]
            assert (data["totalCount"], data["pageNum"], data["pageSize"]) == (24, page, 5)
            assert len(data["data"]) == (5 if page < 5 else 4)
            seen += [e["deviceId"] for e in data["data"]]
        assert seen == [e["deviceId"] for e in reversed(entries)]

        beyond = await client.request("GetDeviceInfoRequest", {"pageNum": 9, "pageSize": 5})
        assert beyond["data"]["data"] == []
        assert beyond["data"]["totalCount"] == 24

        zero = await client.request("GetDeviceInfoRequest", {"pageNum": 0, "pageSize": 3})
        assert zero["data"]["pageNum"] == 1
        assert [e["deviceId"] for e in zero["data"]["data"]] == [e["deviceId"] for e in entries[:3]]

        lights = (
            await client.request("GetDeviceInfoRequest", {"deviceTypesList": ["Light", "DoorLock"]})
        )["data"]
        assert lights["totalCount"] == 3
        assert {e["deviceId"] for e in lights["data"]} == {LIGHT, "lumi1.54ef44d1f3b8", LOCK}

        none = (await client.request("GetDeviceInfoRequest", NO_DATA))["data"]
        assert none["totalCount"] == 24


async def test_get_all_device_info(sim: StudioSimulator) -> None:
    _status, body = await http_post(sim, req("GetAllDeviceInfoRequest"))
    entries = json.loads(body)["data"]
    assert len(entries) == 24
    by_id = {e["deviceId"]: e for e in entries}
    assert by_id[OFFLINE]["state"] == 0
    assert by_id[SWITCH]["state"] == 1
    assert by_id[SWITCH]["deviceName"] == "Living Room Wall Switch"
    assert by_id[SWITCH]["deviceTypesList"] == ["Switch"]


async def test_get_devices_shapes(sim: StudioSimulator) -> None:
    async with connect(sim) as client:
        everything = (await client.request("GetDevicesRequest", {}))["data"]
        assert len(everything) == 24
        assert len((await client.request("GetDevicesRequest"))["data"]) == 24

        picked = (
            await client.request(
                "GetDevicesRequest", {"deviceIds": [THERMO, "lumi.doesnotexist", HUB]}
            )
        )["data"]
        assert [d["deviceId"] for d in picked] == [THERMO, HUB]
        thermo = picked[0]
        assert set(thermo) == {"deviceId", "name", "model", "deviceTypesList", "state", "endpoints",
                               "space"}
        assert thermo["space"]["name"] == "Hallway"
        root = thermo["endpoints"][0]
        assert (root["endpointId"], root["endpointTypes"]) == (0, ["Root"])
        basic = root["functions"][0]
        assert basic["functionCode"] == "BasicInformation"
        assert basic["functionId"] == 128
        reach = {t["traitCode"]: t for t in basic["traits"]}["Reachable"]
        assert reach["traitId"] == 32901
        assert reach["value"] is True
        assert isinstance(reach["time"], int)

        traits = {
            (ep["endpointId"], fn["functionCode"], t["traitCode"]): t
            for ep in thermo["endpoints"]
            for fn in ep["functions"]
            for t in fn["traits"]
        }
        sp = traits[(1, "Thermostat", "SetTemperature")]
        assert sp["attribute"] == {
            "readable": True,
            "writable": True,
            "subscribable": True,
            "type": "NUMBER",
            "format": "Float",
            "unit": "°C",
            "min": 5,
            "max": 30,
            "step": 0.5,
            "defaultValue": "20",
        }
        assert sp["value"] == 21.5
        mode = traits[(1, "Thermostat", "HeaterCoolerMode")]
        assert mode["attribute"]["type"] == "ENUM"
        assert {"key": "Heat", "value": "1"} in mode["attribute"]["enums"]
        assert mode["value"] == "1"

        hub = picked[1]
        other = [
            t
            for ep in hub["endpoints"]
            for fn in ep["functions"]
            for t in fn["traits"]
            if t["attribute"]["type"] == "OTHER"
        ]
        assert other
        assert isinstance(other[0]["value"], dict)


async def test_get_trait_value(sim: StudioSimulator) -> None:
    sim.set_value(SWITCH, 3, "Output", "OnOff", False)
    async with connect(sim) as client:
        reply = await client.request(
            "GetTraitValueRequest",
            [
                {
                    "deviceId": SWITCH,
                    "endpointId": 3,
                    "functionCode": "Output",
                    "traitCodes": ["OnOff", "Nope"],
                },
                {
                    "deviceId": THERMO,
                    "endpointId": 1,
                    "functionCode": "Thermostat",
                    "traitCodes": ["SetTemperature", "HeaterCoolerMode"],
                },
                {
                    "deviceId": "lumi.unknown",
                    "endpointId": 1,
                    "functionCode": "Output",
                    "traitCodes": ["OnOff"],
                },
            ],
        )
    items = reply["data"]
    assert [
        (i["deviceId"], i["endpointId"], i["functionCode"], i["traitCode"], i["value"])
        for i in items
    ] == [
        (SWITCH, 3, "Output", "OnOff", False),
        (THERMO, 1, "Thermostat", "SetTemperature", 21.5),
        (THERMO, 1, "Thermostat", "HeaterCoolerMode", "1"),
    ]
    assert all(isinstance(i["time"], int) for i in items)


# ------------------------------------------------------------------------------------ execute


async def test_execute_returns_only_failed_items_and_pushes_successes(
    sim: StudioSimulator,
) -> None:
    good = [
        trait_update(SWITCH, 2, "Output", "OnOff", True),
        trait_update(THERMO, 1, "Thermostat", "SetTemperature", 22.5),
        trait_update(THERMO, 1, "Thermostat", "HeaterCoolerMode", "2"),
        trait_update(LIGHT, 1, "LevelControl", "CurrentLevel", 55.0),
    ]
    bad = [
        (trait_update("lumi.nosuchdevice", 2, "Output", "OnOff", True), 2030),
        (trait_update(SWITCH, 7, "Output", "OnOff", True), 1531),
        (trait_update(SWITCH, 2, "Output", "Brightness", True), 1531),
        (trait_update(SWITCH, 0, "BasicInformation", "FirmwareRevision", "9"), 1530),
        (trait_update(LOCK, 1, "DoorLock", "LockState", "2"), 1530),
        (trait_update(OFFLINE, 0, "BasicInformation", "Reachable", True), 1530),
        (trait_update(SWITCH, 3, "Output", "OnOff", "true"), 1532),
        (trait_update(SWITCH, 3, "Output", "OnOff", 1), 1532),
        (trait_update(LIGHT, 1, "LevelControl", "CurrentLevel", 101), 1532),
        (trait_update(LIGHT, 1, "LevelControl", "CurrentLevel", 50.5), 1532),
        (trait_update(LIGHT, 1, "LevelControl", "CurrentLevel", "50"), 1532),
        (trait_update(LIGHT, 1, "ColorControl", "ColorTemperature", 100), 1532),
        (trait_update(THERMO, 1, "Thermostat", "SetTemperature", 4.5), 1532),
        (trait_update(THERMO, 1, "Thermostat", "HeaterCoolerMode", 2), 1532),
        (trait_update(THERMO, 1, "Thermostat", "HeaterCoolerMode", "Heat"), 1532),
        (trait_update(THERMO, 1, "Thermostat", "FanMode", None), 1532),
    ]
    async with connect(sim) as client:
        assert (await client.request("SubscribeAllRequest"))["code"] == 0
        reply = await client.request(
            "ExecuteTraitRequest", good[:2] + [b for b, _ in bad] + good[2:]
        )
        assert reply["code"] == 0
        failed = reply["data"]
        assert [f["code"] for f in failed] == [c for _, c in bad]
        for item, (sent, _) in zip(failed, bad, strict=True):
            assert {k: v for k, v in item.items() if k not in ("code", "message")} == sent
            assert isinstance(item["message"], str)
            assert item["message"]

        pushes = [await client.push() for _ in good]
        assert [p["type"] for p in pushes] == ["TraitValueUpdate"] * 4
        assert [p["data"]["value"] for p in pushes] == [True, 22.5, "2", 55]
        assert all(p["msgId"].startswith("push-") for p in pushes)
        assert pushes[0]["data"] == {
            "deviceId": SWITCH,
            "endpointId": 2,
            "functionCode": "Output",
            "traitCode": "OnOff",
            "value": True,
            "time": pushes[0]["data"]["time"],
        }

    assert sim.get_value(SWITCH, 2, "Output", "OnOff") is True
    assert sim.get_value(SWITCH, 3, "Output", "OnOff") is True  # unchanged by the bad items
    assert sim.get_value(LIGHT, 1, "LevelControl", "CurrentLevel") == 55
    assert sim.get_value(THERMO, 1, "Thermostat", "HeaterCoolerMode") == "2"


async def test_execute_on_offline_device_answers_602(sim: StudioSimulator) -> None:
    sim.add_device(
        thermostat("lumi.158d00aa00bb01", "Spare Thermostat", create_time=1, online=False)
    )
    async with connect(sim) as client:
        item = trait_update("lumi.158d00aa00bb01", 1, "Thermostat", "SetTemperature", 20)
        reply = await client.request("ExecuteTraitRequest", [item])
    assert [f["code"] for f in reply["data"]] == [602]
    assert sim.get_value("lumi.158d00aa00bb01", 1, "Thermostat", "SetTemperature") == 21.5


async def test_execute_over_http_pushes_to_ws_subscribers(sim: StudioSimulator) -> None:
    async with connect(sim) as client:
        sub = await client.request(
            "SubscribeTraitValueRequest",
            [
                {
                    "deviceId": SWITCH,
                    "endpointId": 3,
                    "functionCode": "Output",
                    "traitCodes": ["OnOff"],
                },
            ],
        )
        assert (sub["code"], sub["data"]) == (0, [])
        item = trait_update(SWITCH, 3, "Output", "OnOff", False)
        status, body = await http_post(sim, req("ExecuteTraitRequest", [item], msg_id="e1"))
        reply = json.loads(body)
        assert (status, reply["type"], reply["msgId"], reply["code"], reply["data"]) == (
            200,
            "ExecuteTraitResponse",
            "e1",
            0,
            [],
        )
        push = await client.push()
        assert push["data"]["traitCode"] == "OnOff"
        assert push["data"]["value"] is False
    assert [m["type"] for m in sim.received].count("ExecuteTraitRequest") == 1


async def test_received_records_every_parsed_request(sim: StudioSimulator) -> None:
    async with connect(sim) as client:
        await client.request("GetAllDeviceInfoRequest")
        await client.request("GetDevicesRequest", {"deviceIds": [SWITCH]})
        await client.send_raw("not json")
    assert [m["type"] for m in sim.received] == ["GetAllDeviceInfoRequest", "GetDevicesRequest"]
    assert not any(m["type"] == "ExecuteTraitRequest" for m in sim.received)


# ------------------------------------------------------------------------------------ pushes


async def test_subscribe_per_trait_versus_all(sim: StudioSimulator) -> None:
    async with connect(sim) as one, connect(sim) as every, connect(sim) as idle:
        sub = await one.request(
            "SubscribeTraitValueRequest",
            [
                {
                    "deviceId": SWITCH,
                    "endpointId": 2,
                    "functionCode": "Output",
                    "traitCodes": ["OnOff"],
                },
            ],
        )
        assert sub["data"] == []
        await every.request("SubscribeAllRequest")

        sim.set_value(SWITCH, 3, "Output", "OnOff", False)  # only `every`
        sim.set_value(SWITCH, 2, "Output", "OnOff", True)  # both

        first = await one.push()
        assert (first["data"]["endpointId"], first["data"]["value"]) == (2, True)
        got = [await every.push(), await every.push()]
        assert [p["data"]["endpointId"] for p in got] == [3, 2]
        assert got[1]["msgId"] == first["msgId"]  # one push, delivered to both
        assert sim.push_count == 3

        # `idle` got nothing: its next message is the response to its request.
        await idle.request("GetAllDeviceInfoRequest")
        assert idle.pushes == []


async def test_trait_and_all_subscription_deliver_once(sim: StudioSimulator) -> None:
    x = {"deviceId": SWITCH, "endpointId": 2, "functionCode": "Output", "traitCodes": ["OnOff"]}
    async with connect(sim) as client:
        await client.request("SubscribeTraitValueRequest", [x])
        await client.request("SubscribeAllRequest")
        sim.set_value(SWITCH, 2, "Output", "OnOff", True)
        sim.set_value(SWITCH, 3, "Output", "OnOff", False)
        got = [await client.push(), await client.push()]
        assert [p["data"]["endpointId"] for p in got] == [2, 3]
        assert sim.push_count == 2


async def test_subscribe_reports_unknown_traits(sim: StudioSimulator) -> None:
    async with connect(sim) as client:
        reply = await client.request(
            "SubscribeTraitValueRequest",
            [
                {
                    "deviceId": SWITCH,
                    "endpointId": 2,
                    "functionCode": "Output",
                    "traitCodes": ["OnOff", "Nope"],
                },
                {
                    "deviceId": "lumi.unknown",
                    "endpointId": 1,
                    "functionCode": "Output",
                    "traitCodes": ["OnOff"],
                },
            ],
        )
    assert [(f["traitCode"], f["code"]) for f in reply["data"]] == [("Nope", 1531), ("OnOff", 2030)]


async def test_unsubscribe_stops_pushes(sim: StudioSimulator) -> None:
    x = {"deviceId": SWITCH, "endpointId": 2, "functionCode": "Output", "traitCodes": ["OnOff"]}
    y = {"deviceId": SWITCH, "endpointId": 3, "functionCode": "Output", "traitCodes": ["OnOff"]}
    async with connect(sim) as client:
        await client.request("SubscribeTraitValueRequest", [x, y])
        reply = await client.request("UnsubscribeTraitValueRequest", [x])
        assert (reply["code"], reply["data"]) == (0, [])
        sim.set_value(SWITCH, 2, "Output", "OnOff", True)
        sim.set_value(SWITCH, 3, "Output", "OnOff", False)
        assert (await client.push())["data"]["endpointId"] == 3

        await client.request("SubscribeAllRequest")
        assert (await client.request("UnsubscribeAllRequest"))["data"] is None
        sim.set_value(SWITCH, 3, "Output", "OnOff", True)
        sim.add_device(thermostat("lumi.158d00aa00bb02", "New", create_time=5))
        await client.request("GetAllDeviceInfoRequest")
        assert client.pushes == []


@pytest.mark.parametrize(
    "rtype",
    [
        "SubscribeAllRequest",
        "UnsubscribeAllRequest",
        "SubscribeTraitValueRequest",
        "UnsubscribeTraitValueRequest",
    ],
)
async def test_subscriptions_over_http_are_refused(sim: StudioSimulator, rtype: str) -> None:
    data = [
        {"deviceId": SWITCH, "endpointId": 2, "functionCode": "Output", "traitCodes": ["OnOff"]}
    ]
    status, body = await http_post(sim, req(rtype, data))
    reply = json.loads(body)
    assert status == 200
    assert reply["type"] == rtype.replace("Request", "Response")
    assert (reply["code"], reply["data"]) == (400, None)
    assert "WebSocket" in reply["message"]


async def test_object_events(sim: StudioSimulator) -> None:
    async with connect(sim) as client, connect(sim) as per_trait:
        await client.request("SubscribeAllRequest")
        await per_trait.request(
            "SubscribeTraitValueRequest",
            [
                {
                    "deviceId": SWITCH,
                    "endpointId": 2,
                    "functionCode": "Output",
                    "traitCodes": ["OnOff"],
                },
            ],
        )
        new_id = "lumi.158d00aa00bb03"
        sim.add_device(thermostat(new_id, "Loft Thermostat", create_time=5))
        sim.rename_device(new_id, "Loft / Attic")
        sim.set_online(new_id, False)
        sim.set_online(new_id, True)
        sim.remove_device(new_id)
        sim.set_value(SWITCH, 2, "Output", "OnOff", True)

        events = [await client.push() for _ in range(8)]
        kinds = [
            e["data"]["eventType"] if e["type"] == "objectEvent" else e["data"]["traitCode"]
            for e in events
        ]
        assert kinds == [
            "DEVICE_ADDED",
            "DEVICE_NAME_UPDATE",
            "Reachable",
            "DEVICE_OFFLINE",
            "Reachable",
            "DEVICE_ONLINE",
            "DEVICE_REMOVED",
            "OnOff",
        ]
        assert events[0] == {
            "type": "objectEvent",
            "version": "v1",
            "msgId": events[0]["msgId"],
            "data": {
                "eventType": "DEVICE_ADDED",
                "data": {"deviceId": new_id, "name": "Loft Thermostat"},
            },
        }
        assert events[0]["msgId"].startswith("event-")
        assert events[1]["data"]["data"] == {"deviceId": new_id, "name": "Loft / Attic"}
        assert events[2]["data"]["value"] is False
        assert events[6]["data"]["data"] == {"deviceId": new_id}

        # The per-trait subscriber saw none of the events: its first push is the OnOff change.
        assert (await per_trait.push())["data"]["traitCode"] == "OnOff"

    with pytest.raises(KeyError):
        sim.remove_device(new_id)
    with pytest.raises(ValueError, match="exists"):
        sim.add_device(sample_home()[0])


async def test_online_state_is_visible_in_queries(sim: StudioSimulator) -> None:
    sim.set_online(SWITCH, False)
    async with connect(sim) as client:
        info = (await client.request("GetAllDeviceInfoRequest"))["data"]
        assert {e["deviceId"]: e["state"] for e in info}[SWITCH] == 0
        reply = await client.request(
            "ExecuteTraitRequest", [trait_update(SWITCH, 2, "Output", "OnOff", True)]
        )
        assert [f["code"] for f in reply["data"]] == [602]


# ------------------------------------------------------------------------------------ faults


async def test_drop_connections(sim: StudioSimulator) -> None:
    async with connect(sim) as client:
        await client.request("SubscribeAllRequest")
        assert sim.connections == 1
        await sim.drop_connections()
        assert sim.connections == 0
        with pytest.raises(ConnectionClosed):
            await client.recv_json()
        assert client.ws.close_code in (None, 1006)
        sim.set_value(SWITCH, 2, "Output", "OnOff", True)  # no subscriber left, no error
    async with connect(sim) as again:
        assert (await again.request("GetAllDeviceInfoRequest"))["code"] == 0
        assert sim.connections == 1


async def test_latency_delays_every_response(sim: StudioSimulator) -> None:
    sim.latency = 0.2
    async with connect(sim) as client:
        start = time.monotonic()
        await client.request("GetAllDeviceInfoRequest")
        assert time.monotonic() - start >= 0.19
        # Requests in flight are answered concurrently, not one latency after another.
        start = time.monotonic()
        await asyncio.gather(
            *(
                client.ws.send(json.dumps(req("GetAllDeviceInfoRequest", msg_id=f"p{i}")))
                for i in range(5)
            )
        )
        ids = {(await client.recv_json())["msgId"] for _ in range(5)}
        assert ids == {f"p{i}" for i in range(5)}
        assert 0.19 <= time.monotonic() - start < 0.9
    start = time.monotonic()
    await http_post(sim, req("GetAllDeviceInfoRequest"))
    assert time.monotonic() - start >= 0.19


def _is_valid_response(raw: str | bytes, msg_id: str) -> bool:
    try:
        msg = json.loads(raw)
    except ValueError:
        return False
    return (
        isinstance(msg, dict)
        and msg.get("msgId") == msg_id
        and msg.get("code") == 0
        and isinstance(msg.get("data"), list)
    )


async def test_garbage_mode(sim: StudioSimulator) -> None:
    sim.garbage = True
    async with connect(sim) as client:
        for i in range(8):
            await client.ws.send(json.dumps(req("GetAllDeviceInfoRequest", msg_id=f"g{i}")))
            async with asyncio.timeout(TIMEOUT):
                raw = await client.ws.recv()
            assert not _is_valid_response(raw, f"g{i}"), raw
        item = trait_update(SWITCH, 2, "Output", "OnOff", True)
        await client.ws.send(json.dumps(req("ExecuteTraitRequest", [item], msg_id="gx")))
        async with asyncio.timeout(TIMEOUT):
            await client.ws.recv()
        assert sim.get_value(SWITCH, 2, "Output", "OnOff") is False  # not executed
        _status, body = await http_post(sim, req("GetAllDeviceInfoRequest", msg_id="gh"))
        assert not _is_valid_response(body, "gh")
        assert len(sim.received) == 10

        sim.garbage = False
        assert (await client.request("GetAllDeviceInfoRequest"))["code"] == 0


async def test_slow_client_is_dropped_not_waited_for() -> None:
    sim = StudioSimulator(TOKEN, sample_home(), max_queue=10)
    await sim.start()
    try:
        async with connect(sim) as slow, connect(sim) as fast:
            await slow.request("SubscribeAllRequest")
            await fast.request(
                "SubscribeTraitValueRequest",
                [
                    {
                        "deviceId": SWITCH,
                        "endpointId": 2,
                        "functionCode": "Output",
                        "traitCodes": ["OnOff"],
                    },
                ],
            )
            for i in range(50):  # synchronous burst: the slow queue overflows
                sim.set_value(THERMO, 1, "Thermostat", "SetTemperature", 10 + i / 2)
            sim.set_value(SWITCH, 2, "Output", "OnOff", True)
            async with asyncio.timeout(TIMEOUT):
                await slow.ws.wait_closed()
            assert slow.ws.close_code in (None, 1006)
            assert sim.connections == 1
            assert (await fast.push())["data"]["traitCode"] == "OnOff"
    finally:
        await sim.stop()


async def test_with_a_backlog_bound_a_client_that_does_not_read_stops_the_changes() -> None:
    sim = StudioSimulator(TOKEN, synthetic_devices(200, 1), max_backlog=100)
    await sim.start()
    try:
        async with connect(sim, close_timeout=0.5) as reader:  # its close waits behind pushes
            await reader.request("SubscribeAllRequest")
            sim.start_random_changes(100_000, seed=1)  # as fast as it can: the socket fills
            await eventually(lambda: sim.paused_ticks >= 1)
            made, ticks = sim.change_count, sim.paused_ticks
            await eventually(lambda: sim.paused_ticks >= ticks + 5)
            assert sim.change_count == made  # nothing made while the client is behind
            async with asyncio.timeout(TIMEOUT):
                while sim.change_count == made:  # reading lets the hub go on
                    await reader.push()
            sim.stop_random_changes()
    finally:
        await sim.stop()


async def test_random_changes_arrive_at_roughly_the_rate(sim: StudioSimulator) -> None:
    limits = {
        (d.device_id, ep, fn, tr.code): tr for d in sample_home() for ep, fn, tr in d.iter_traits()
    }
    async with connect(sim) as client:
        await client.request("SubscribeAllRequest")
        start = time.monotonic()
        sim.start_random_changes(2000, seed=1)
        pushes = [await client.push() for _ in range(400)]
        elapsed = time.monotonic() - start
        sim.stop_random_changes()
    assert 400 / elapsed > 250  # 2000/s asked for; a loose lower bound for a loaded box
    assert sim.change_count >= 400
    devices = set()
    for push in pushes:
        data = push["data"]
        devices.add(data["deviceId"])
        tr = limits[(data["deviceId"], data["endpointId"], data["functionCode"], data["traitCode"])]
        assert data["deviceId"] != OFFLINE
        value = data["value"]
        if tr.type == "BOOLEAN":
            assert isinstance(value, bool)
        elif tr.type == "ENUM":
            assert tr.enums is not None
            assert value in [v for _, v in tr.enums]
        else:
            assert tr.type == "NUMBER"
            assert not isinstance(value, bool)
            assert tr.min is not None
            assert tr.max is not None
            assert tr.min <= value <= tr.max
            if "int" in tr.format.lower():
                assert isinstance(value, int)
    assert len(devices) >= 10


async def test_synthetic_simulator_and_serve(capsys: pytest.CaptureFixture[str]) -> None:
    ready: asyncio.Future[StudioSimulator] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(0, TOKEN, 30, 500.0, 4, on_ready=ready.set_result))
    try:
        async with asyncio.timeout(TIMEOUT):
            running = await ready
        assert f"{running.url}/open/ws" in capsys.readouterr().out
        async with connect(running, TOKEN) as client:
            entries = (await client.request("GetAllDeviceInfoRequest"))["data"]
            expected = synthetic_devices(30, 4)
            assert len(entries) == 30
            assert {e["deviceId"] for e in entries} == {d.device_id for d in expected}
            times = [e["createTime"] for e in entries]
            assert times == sorted(times)
            await client.request("SubscribeAllRequest")
            assert (await client.push())["type"] == "TraitValueUpdate"  # rate > 0: changes run
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert running.connections == 0
