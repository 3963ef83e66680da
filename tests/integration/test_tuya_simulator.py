"""The Tuya cloud simulator over real sockets: signing, tokens, every home action, device
commands and the message service (decrypt, ack, redelivery)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from bridge.backends.tuya.sign import decode_push_frame, pulsar_password, sign_request
from bridge.simulators.tuya import DEFAULT_CLIENT_ID, DEFAULT_SECRET, TuyaSimulator
from bridge.simulators.tuya_home import (
    CURTAIN,
    GARDEN_SENSOR,
    HOME_ID,
    HOMETOWN_ID,
    LIGHT,
    MEMBER_UID,
    OTHER_ACCOUNT,
    OTHER_UID,
    PLUG,
    ROOM_BEDROOM,
    ROOM_KITCHEN,
    ROOM_LIVING,
    SENSOR,
    SHARER_HOME_ID,
    SOCKET,
    THERMOSTAT,
    USER_UID,
    metering_plug,
    share_plugs,
)
from tests.mqtt_probe import eventually


class Client:
    """A minimal signed OpenAPI client written for the tests (new algorithm)."""

    def __init__(self, sim: TuyaSimulator, http: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.http = http
        self.client_id = sim.client_id
        self.secret = sim.secret
        self.access_token = ""
        self.refresh_token = ""

    async def raw(self, method: str, path: str, query: Mapping[str, str] | None = None,
                  body: Any = None, *, token: str | None = None, t: str | None = None,
                  drop: tuple[str, ...] = (), override: Mapping[str, str] | None = None,
                  signed_headers: Mapping[str, str] | None = None,
                  send_body: bytes | None = None,
                  raw_body: bytes | None = None) -> dict[str, Any]:
        token_api = path.startswith("/v1.0/token")
        access = "" if token_api else (self.access_token if token is None else token)
        data = b"" if body is None else json.dumps(body).encode()
        if raw_body is not None:
            data = body = raw_body
        stamp = t or str(int(time.time() * 1000))
        nonce = uuid.uuid4().hex
        headers = {
            "client_id": self.client_id, "t": stamp, "sign_method": "HMAC-SHA256",
            "nonce": nonce,
            "sign": sign_request(client_id=self.client_id, secret=self.secret, method=method,
                                 path=path, query=query, body=data, t=stamp, nonce=nonce,
                                 access_token=access, signature_headers=signed_headers),
        }
        if not token_api:
            headers["access_token"] = access
        if signed_headers:
            headers.update(signed_headers)
            headers["Signature-Headers"] = ":".join(signed_headers)
        headers.update(override or {})
        for name in drop:
            headers.pop(name, None)
        payload = send_body if send_body is not None else (data if body is not None else None)
        async with self.http.request(method, self.sim.url + path, params=query, data=payload,
                                     headers=headers) as response:
            assert response.status == 200
            envelope: dict[str, Any] = await response.json()
        return envelope

    async def login(self) -> dict[str, Any]:
        envelope = await self.raw("GET", "/v1.0/token", {"grant_type": "1"})
        assert envelope["success"] is True, envelope
        self.access_token = envelope["result"]["access_token"]
        self.refresh_token = envelope["result"]["refresh_token"]
        return envelope

    async def ok(self, method: str, path: str, query: Mapping[str, str] | None = None,
                 body: Any = None) -> Any:
        envelope = await self.raw(method, path, query, body)
        assert envelope["success"] is True, envelope
        assert isinstance(envelope["t"], int)
        assert envelope["tid"]
        return envelope["result"]

    async def fails(self, code: int, method: str, path: str,
                    query: Mapping[str, str] | None = None, body: Any = None,
                    **options: Any) -> dict[str, Any]:
        envelope = await self.raw(method, path, query, body, **options)
        assert envelope["success"] is False, envelope
        assert envelope["code"] == code, envelope
        assert isinstance(envelope["msg"], str)
        assert envelope["msg"]
        assert isinstance(envelope["t"], int)
        return envelope


@pytest.fixture
async def sim() -> AsyncIterator[TuyaSimulator]:
    simulator = TuyaSimulator()
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def client(sim: TuyaSimulator) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as http:
        api = Client(sim, http)
        await api.login()
        yield api



# ---- signing and tokens ---------------------------------------------------------------------


async def test_token_envelope(sim: TuyaSimulator, client: Client) -> None:
    envelope = await client.login()
    result = envelope["result"]
    assert set(result) == {"uid", "access_token", "expire_time", "refresh_token"}
    assert result["expire_time"] == 7200
    assert isinstance(envelope["t"], int)
    assert envelope["tid"]
    devices = await client.ok("GET", f"/v1.0/users/{USER_UID}/devices")
    assert {d["id"] for d in devices} == {SOCKET, PLUG, CURTAIN, LIGHT, THERMOSTAT, SENSOR,
                                          GARDEN_SENSOR}


async def test_token_lifetime_is_configurable() -> None:
    simulator = TuyaSimulator(token_lifetime=5)
    await simulator.start()
    try:
        async with aiohttp.ClientSession() as http:
            envelope = await Client(simulator, http).login()
            assert envelope["result"]["expire_time"] == 5
    finally:
        await simulator.stop()


async def test_the_documented_example_request_is_accepted() -> None:
    """protocols.md §3.3: the doc's inputs and the sign computed from them, sent verbatim."""
    simulator = TuyaSimulator("1KAD46OrT9HafiKdsXeg", "4OHBOnWOqaEC1mWXOpVL3yV50s0qGSRC")
    simulator.clock_offset_ms = 1588925778000 - int(time.time() * 1000)
    await simulator.start()
    headers = {"client_id": "1KAD46OrT9HafiKdsXeg", "t": "1588925778000",
               "sign_method": "HMAC-SHA256", "nonce": "5138cc3a9033d69856923fd07b491173",
               "sign": "3206F74CBFC2869794FD3013C44F18166BE22AB1FB5FF66F513212264F67F681"}
    try:
        async with aiohttp.ClientSession() as http:
            url = f"{simulator.url}/v1.0/token?grant_type=1"
            async with http.get(url, headers=headers) as response:
                envelope = await response.json()
            assert envelope["success"] is True, envelope
            headers["sign"] = headers["sign"].replace("3206", "3207")
            async with http.get(url, headers=headers) as response:
                assert (await response.json())["code"] == 1004
    finally:
        await simulator.stop()


@pytest.mark.parametrize("header", ["client_id", "sign", "t", "sign_method", "access_token"])
async def test_missing_header(client: Client, header: str) -> None:
    envelope = await client.fails(1105, "GET", f"/v1.0/users/{USER_UID}/homes", drop=(header,))
    assert header in envelope["msg"]


async def test_an_empty_token_is_an_invalid_one(client: Client) -> None:
    """An SDK that lost its token sends ``access_token: ""``: that is a token, and invalid."""
    envelope = await client.fails(1010, "GET", f"/v1.0/users/{USER_UID}/homes", token="")
    assert envelope["msg"] == "token invalid"


async def test_signing_failures(sim: TuyaSimulator, client: Client) -> None:
    path = f"/v1.0/users/{USER_UID}/homes"
    stale = str(int(time.time() * 1000) - 6 * 60 * 1000)
    future = str(int(time.time() * 1000) + 6 * 60 * 1000)
    await client.fails(1013, "GET", path, t=stale)
    await client.fails(1013, "GET", path, t=future)
    await client.fails(1013, "GET", path, override={"t": "yesterday"})
    await client.fails(1004, "GET", path, override={"sign": "0" * 64})
    await client.fails(1004, "GET", path, override={"sign_method": "MD5"})
    await client.fails(1004, "GET", path, override={"nonce": "another"})
    await client.fails(1010, "GET", path, token="not-a-token")
    client.client_id = "someone-else"
    await client.fails(1005, "GET", path)
    client.client_id = sim.client_id
    client.secret = "x" * 32
    await client.fails(1004, "GET", "/v1.0/token", {"grant_type": "1"})
    client.secret = sim.secret
    await client.fails(1003, "GET", "/v1.0/token", {"grant_type": "2"})
    # the body and the query are covered by the sign
    body = {"commands": [{"code": "switch_1", "value": True}]}
    await client.fails(1004, "POST", f"/v1.0/devices/{PLUG}/commands", body=body,
                       send_body=b'{"commands":[{"code":"switch_1","value":false}]}')
    await client.ok("POST", f"/v1.0/devices/{PLUG}/commands", body=body)
    assert sim.get_status(PLUG, "switch_1") is True


async def test_signature_headers_are_covered(client: Client) -> None:
    path = f"/v1.0/users/{USER_UID}/homes"
    homes = await client.raw("GET", path, signed_headers={"area_id": "29a", "call_id": "x1"})
    assert homes["success"] is True, homes
    await client.fails(1004, "GET", path, signed_headers={"area_id": "29a"},
                       override={"area_id": "other"})


async def test_server_clock_window(sim: TuyaSimulator, client: Client) -> None:
    sim.clock_offset_ms = 10 * 60 * 1000
    envelope = await client.fails(1013, "GET", f"/v1.0/users/{USER_UID}/homes")
    assert envelope["t"] - int(time.time() * 1000) > 9 * 60 * 1000


async def test_expiry_and_refresh(sim: TuyaSimulator, client: Client) -> None:
    path = f"/v1.0/users/{USER_UID}/homes"
    sim.expire_tokens()
    expired = await client.fails(1010, "GET", path)
    assert expired["msg"] == "token invalid"  # as Tuya answers, expired or unknown alike
    old_access, old_refresh = client.access_token, client.refresh_token
    refreshed = await client.ok("GET", f"/v1.0/token/{old_refresh}")
    assert refreshed["access_token"] != old_access
    await client.fails(1010, "GET", path, token=old_access)
    await client.fails(1012, "GET", f"/v1.0/token/{old_refresh}")  # single use
    client.access_token = refreshed["access_token"]
    assert await client.ok("GET", path)
    assert sim.stats["tokens_refreshed"] == 1
    sim.revoke_tokens()
    await client.fails(1010, "GET", path)


async def test_unknown_path(client: Client) -> None:
    envelope = await client.fails(1108, "GET", "/v1.0/nothing/here")
    assert set(envelope) == {"success", "code", "msg", "t", "tid"}
    await client.fails(1108, "PATCH", f"/v1.0/homes/{HOME_ID}")
    # token-type paths the service does not have: 1108 too, whatever the token header says
    await client.fails(1108, "POST", "/v1.0/iot-01/associated-users/actions/authorized-login",
                       body={}, token="")
    await client.fails(1108, "GET", "/v1.0/token/a/b", drop=("access_token",))


async def test_batch_device_paths(client: Client) -> None:
    """``status`` and ``factory-infos`` are paths of their own, not device ids."""
    listed = await client.ok("GET", "/v1.0/devices/status", {"device_ids": PLUG})
    assert listed[0]["id"] == PLUG
    assert {"code": "switch_1", "value": False} in listed[0]["status"]
    infos = await client.ok("GET", "/v1.0/devices/factory-infos", {"device_ids": PLUG})
    assert [i["id"] for i in infos] == [PLUG]
    await client.fails(1100, "GET", "/v1.0/devices/status")
    await client.fails(1000, "GET", "/v1.0/devices/status", {"device_ids": "nope"})


async def test_user_devices_paging(sim: TuyaSimulator, client: Client) -> None:
    path = f"/v1.0/users/{USER_UID}/devices"
    everything = [d["id"] for d in await client.ok("GET", path)]
    sim.page_size = 2
    first = await client.ok("GET", path, {"page_size": "50"})
    assert [d["id"] for d in first] == everything[:2]  # the cloud caps the page
    second = await client.ok("GET", path, {"page_size": "2", "last_id": everything[1]})
    assert [d["id"] for d in second] == everything[2:4]
    await client.fails(1109, "GET", path, {"page_size": "2", "last_id": "unknown"})


async def test_user_devices_paging_by_number(sim: TuyaSimulator, client: Client) -> None:
    """The private-cloud documentation's form: ``page_no`` + ``page_size``; no ``last_id``."""
    path = f"/v1.0/users/{USER_UID}/devices"
    everything = [d["id"] for d in await client.ok("GET", path)]
    sim.page_scheme = "page_no"
    sim.page_size = 2

    async def page(query: dict[str, str]) -> list[str]:
        return [d["id"] for d in await client.ok("GET", path, query)]

    assert await page({"page_size": "50"}) == everything[:2]  # page 1, capped
    assert await page({"page_size": "2", "page_no": "2"}) == everything[2:4]
    assert await page({"page_size": "2", "page_no": "2", "last_id": everything[5]}) == (
        everything[2:4])  # last_id means nothing here
    assert await page({"page_no": "4"}) == everything[6:]
    assert await page({"page_no": "9"}) == []
    await client.fails(1109, "GET", path, {"page_no": "0"})


async def test_shared_devices_are_in_the_users_listing_only(sim: TuyaSimulator,
                                                            client: Client) -> None:
    path = f"/v1.0/users/{USER_UID}/devices"
    own = {d["id"] for d in await client.ok("GET", path)}
    shared = {p.id for p in share_plugs(sim.world, 3)}
    listed = {d["id"]: d for d in await client.ok("GET", path)}
    assert set(listed) == own | shared
    assert {d["id"] for d in await client.ok("GET", path, {"from": "sharing"})} == shared
    assert {d["id"] for d in await client.ok("GET", path, {"from": "home"})} == own
    await client.fails(1109, "GET", path, {"from": "elsewhere"})
    homes = await client.ok("GET", f"/v1.0/users/{USER_UID}/homes")
    assert SHARER_HOME_ID not in {h["home_id"] for h in homes}
    for home_id in (HOME_ID, HOMETOWN_ID):
        in_home = await client.ok("GET", f"/v1.0/homes/{home_id}/devices")
        assert not shared & {d["id"] for d in in_home}


# ---- homes, rooms, members ------------------------------------------------------------------


async def test_home_add_edit_get_delete(sim: TuyaSimulator, client: Client) -> None:
    body = {"uid": USER_UID, "home": {"geo_name": "Xihu District, Hangzhou", "name": "Flat",
                                      "lat": 30.1624, "lon": 120.545},
            "rooms": ["Kitchen", "Bathroom"]}
    home_id = await client.ok("POST", "/v1.0/home/create-home", body=body)
    assert isinstance(home_id, int)
    info = await client.ok("GET", f"/v1.0/homes/{home_id}")
    assert info == {"home_id": home_id, "name": "Flat", "geo_name": "Xihu District, Hangzhou",
                    "lon": 120.545, "lat": 30.1624}
    rooms = await client.ok("GET", f"/v1.0/homes/{home_id}/rooms")
    assert [r["name"] for r in rooms["rooms"]] == ["Kitchen", "Bathroom"]
    assert await client.ok("PUT", f"/v1.0/homes/{home_id}",
                           body={"name": "My Flat", "geo_name": "Hangzhou"}) is True
    info = await client.ok("GET", f"/v1.0/homes/{home_id}")
    assert (info["name"], info["geo_name"], info["lat"]) == ("My Flat", "Hangzhou", 30.1624)
    homes = await client.ok("GET", f"/v1.0/users/{USER_UID}/homes")
    assert home_id in {h["home_id"] for h in homes}
    assert await client.ok("DELETE", f"/v1.0/homes/{home_id}") is True
    await client.fails(1000, "GET", f"/v1.0/homes/{home_id}")
    await client.fails(1000, "DELETE", f"/v1.0/homes/{home_id}")


@pytest.mark.parametrize(("body", "code"), [
    ({"uid": USER_UID, "home": {"geo_name": "x"}}, 1100),
    ({"uid": USER_UID}, 1100),
    ({"home": {"name": "h"}}, 1100),
    ({"uid": USER_UID, "home": "h"}, 1109),
    ({"uid": USER_UID, "home": {"name": "h", "lat": 95}}, 1101),
    ({"uid": USER_UID, "home": {"name": "h", "lon": "east"}}, 1109),
    ({"uid": USER_UID, "home": {"name": "h"}, "rooms": "Kitchen"}, 1109),
    ({"uid": "ay-nobody", "home": {"name": "h"}}, 1000),
])
async def test_home_add_failures(client: Client, body: dict[str, Any], code: int) -> None:
    await client.fails(code, "POST", "/v1.0/home/create-home", body=body)


async def test_home_edit_get_failures(client: Client) -> None:
    await client.fails(1000, "PUT", "/v1.0/homes/999", body={"name": "x"})
    await client.fails(1109, "PUT", f"/v1.0/homes/{HOME_ID}", body={"lon": "x"})
    await client.fails(1109, "PUT", f"/v1.0/homes/{HOME_ID}", body={"name": 5})
    await client.fails(1109, "GET", "/v1.0/homes/abc")
    await client.fails(1109, "PUT", f"/v1.0/homes/{HOME_ID}", raw_body=b"{not json")
    await client.fails(1109, "PUT", f"/v1.0/homes/{HOME_ID}", raw_body=b"[1, 2]")


async def test_home_delete_unbinds_its_devices(sim: TuyaSimulator, client: Client) -> None:
    assert await client.ok("DELETE", f"/v1.0/homes/{HOMETOWN_ID}") is True
    assert GARDEN_SENSOR not in sim.world.devices
    await client.fails(1000, "GET", f"/v1.0/devices/{GARDEN_SENSOR}/status")


async def test_home_devices_is_the_seed_shape(client: Client) -> None:
    devices = await client.ok("GET", f"/v1.0/homes/{HOME_ID}/devices")
    socket = next(d for d in devices if d["id"] == SOCKET)
    assert set(socket) == {"uuid", "uid", "name", "ip", "sub", "status", "category", "online",
                           "id", "time_zone", "local_key", "owner_id", "product_id"}
    assert socket["status"] == [{"code": "switch", "value": "true"},
                                {"code": "countdown_1", "value": "0"}]
    curtain = next(d for d in devices if d["id"] == CURTAIN)
    assert curtain["category"] == "qt"
    assert [s["code"] for s in curtain["status"]] == [
        "control", "percent_control", "percent_state", "mode", "control_back", "auto_power",
        "work_state", "countdown", "countdown_left", "fault", "time_total"]
    assert {s["code"]: s["value"] for s in curtain["status"]}["mode"] == "morning"
    await client.fails(1000, "GET", "/v1.0/homes/1/devices")


async def test_rooms(sim: TuyaSimulator, client: Client) -> None:
    room_id = await client.ok("POST", f"/v1.0/homes/{HOME_ID}/room", body={"name": "Office"})
    assert isinstance(room_id, int)
    await client.fails(1100, "POST", f"/v1.0/homes/{HOME_ID}/room", body={})
    await client.fails(1000, "POST", "/v1.0/homes/5/room", body={"name": "x"})
    assert await client.ok("PUT", f"/v1.0/homes/{HOME_ID}/rooms/{room_id}",
                           body={"name": "Study"}) is True
    await client.fails(1000, "PUT", f"/v1.0/homes/{HOME_ID}/rooms/77", body={"name": "x"})
    await client.fails(1100, "PUT", f"/v1.0/homes/{HOME_ID}/rooms/{room_id}", body={})
    infos = await client.ok("GET", f"/v1.0/homes/{HOME_ID}/rooms")
    assert set(infos) == {"home_id", "name", "geo_name", "lon", "lat", "rooms"}
    assert {"room_id": room_id, "name": "Study"} in infos["rooms"]
    await client.fails(1000, "GET", "/v1.0/homes/5/rooms")
    # room devices: add (moves from the kitchen), list, replace, remove
    path = f"/v1.0/homes/{HOME_ID}/rooms/{room_id}/devices"
    assert await client.ok("POST", path, body={"device_ids": [SOCKET, SENSOR]}) is True
    assert sim.device(SOCKET).room_id == room_id
    listed = await client.ok("GET", path)
    assert {d["id"] for d in listed} == {SOCKET, SENSOR}
    assert await client.ok("GET", f"/v1.0/homes/{HOME_ID}/rooms/{ROOM_KITCHEN}/devices") == []
    await client.fails(1000, "POST", path, body={"device_ids": ["nope"]})
    await client.fails(1109, "POST", path, body={"device_ids": [GARDEN_SENSOR]})
    await client.fails(1100, "POST", path, body={"device_ids": []})
    await client.fails(1109, "POST", path, body={"device_ids": 7})
    await client.fails(1109, "POST", path, body={"device_ids": [SOCKET, 7]})
    assert await client.ok("PUT", path, body={"device_ids": [LIGHT]}) is True
    assert {d["id"] for d in await client.ok("GET", path)} == {LIGHT}
    assert sim.device(SOCKET).room_id is None
    await client.fails(1100, "PUT", path, body={})
    await client.fails(1109, "DELETE", path, {"device_ids": SOCKET})  # not in that room
    assert await client.ok("DELETE", path, {"device_ids": LIGHT}) is True
    assert sim.device(LIGHT).room_id is None
    await client.fails(1000, "GET", f"/v1.0/homes/{HOME_ID}/rooms/77/devices")
    # deleting a room leaves its devices room-less
    assert await client.ok("DELETE", f"/v1.0/homes/{HOME_ID}/rooms/{ROOM_LIVING}") is True
    assert sim.device(PLUG).room_id is None
    assert sim.device(PLUG).home_id == HOME_ID
    await client.fails(1000, "DELETE", f"/v1.0/homes/{HOME_ID}/rooms/{ROOM_LIVING}")


async def test_room_devices_delete_takes_a_json_body_too(sim: TuyaSimulator,
                                                         client: Client) -> None:
    path = f"/v1.0/homes/{HOME_ID}/rooms/{ROOM_BEDROOM}/devices"
    assert await client.ok("DELETE", path, body={"device_ids": [LIGHT]}) is True
    assert sim.device(LIGHT).room_id is None
    await client.ok("POST", path, body={"device_ids": [LIGHT, SOCKET]})
    assert await client.ok("DELETE", path, body={"device_ids": f"{LIGHT},{SOCKET}"}) is True
    assert (sim.device(LIGHT).room_id, sim.device(SOCKET).room_id) == (None, None)


async def test_members(sim: TuyaSimulator, client: Client) -> None:
    path = f"/v1.0/homes/{HOME_ID}/members"
    members = await client.ok("GET", path)
    assert members == [
        {"country_code": "86", "member_account": "18******176", "uid": USER_UID,
         "admin": True, "name": "Hua"},
        {"country_code": "86", "member_account": "15******196", "uid": MEMBER_UID,
         "admin": False, "name": "Ming"},
    ]
    await client.fails(1000, "GET", "/v1.0/homes/5/members")
    # add
    member = {"country_code": OTHER_ACCOUNT[0], "member_account": OTHER_ACCOUNT[1],
              "admin": False, "name": "Li (guest)"}
    assert await client.ok("POST", path, body={"app_schema": "tuyasmart",
                                               "member": member}) is True
    await client.fails(1109, "POST", path, body={"member": member})  # already a member
    await client.fails(1000, "POST", path, body={"member": {**member, "member_account": "1"}})
    await client.fails(1100, "POST", path, body={"member": {"country_code": "86"}})
    await client.fails(1109, "POST", path, body={"member": "Li"})
    names = {m["uid"]: m["name"] for m in await client.ok("GET", path)}
    assert names[OTHER_UID] == "Li (guest)"
    # authority
    assert await client.ok("PUT", f"{path}/{OTHER_UID}", body={"admin": True}) is True
    assert sim.world.homes[HOME_ID].members[OTHER_UID] is True
    await client.fails(1106, "PUT", f"{path}/{USER_UID}", body={"admin": False})
    await client.fails(1000, "PUT", f"{path}/ay-nobody", body={"admin": True})
    await client.fails(1100, "PUT", f"{path}/{OTHER_UID}", body={})
    await client.fails(1109, "PUT", f"{path}/{OTHER_UID}", body={"admin": "yes"})
    # homes of a user
    homes = await client.ok("GET", f"/v1.0/users/{OTHER_UID}/homes")
    assert [h["home_id"] for h in homes] == [HOME_ID]
    assert set(homes[0]) == {"home_id", "name", "geo_name", "lon", "lat"}
    await client.fails(1000, "GET", "/v1.0/users/ay-nobody/homes")
    # delete
    assert await client.ok("DELETE", f"{path}/{OTHER_UID}") is True
    assert await client.ok("GET", f"/v1.0/users/{OTHER_UID}/homes") == []
    await client.fails(1000, "DELETE", f"{path}/{OTHER_UID}")
    await client.fails(1106, "DELETE", f"{path}/{USER_UID}")


async def test_flat_member_body_is_accepted(sim: TuyaSimulator, client: Client) -> None:
    body = {"country_code": OTHER_ACCOUNT[0], "member_account": OTHER_ACCOUNT[1]}
    assert await client.ok("POST", f"/v1.0/homes/{HOMETOWN_ID}/members", body=body) is True
    assert sim.world.homes[HOMETOWN_ID].members[OTHER_UID] is False


async def test_action_endpoint_speaks_the_seed_actions(client: Client) -> None:
    rooms = await client.ok("POST", "/v1.0/action",
                            body={"action": "home.roomList", "params": {"home_id": HOME_ID}})
    assert [r["name"] for r in rooms["rooms"]] == ["Kitchen", "Living Room", "Bedroom"]
    homes = await client.ok("POST", "/v1.0/action",
                            body={"action": "home.memberInfos", "params": {"uid": USER_UID}})
    assert {h["home_id"] for h in homes} == {HOME_ID, HOMETOWN_ID}
    home_id = await client.ok("POST", "/v1.0/action", body={
        "action": "home.add",
        "params": {"uid": "ay1528964101460qLVPu",
                   "home": {"geo_name": "Xihu District, Hangzhou", "name": "My Home",
                            "lat": 30.1624, "lon": 120.545},
                   "rooms": ["Kitchen", "Bathroom"]}})
    assert isinstance(home_id, int)
    await client.fails(1108, "POST", "/v1.0/action", body={"action": "home.fly", "params": {}})
    await client.fails(1100, "POST", "/v1.0/action",
                       body={"action": "home.infos", "params": {}})


# ---- devices --------------------------------------------------------------------------------


async def test_device_description(client: Client) -> None:
    spec = await client.ok("GET", f"/v1.0/iot-03/devices/{PLUG}/specification")
    assert spec["category"] == "cz"
    power = next(s for s in spec["status"] if s["code"] == "cur_power")
    assert power["type"] == "Integer"
    assert isinstance(power["values"], str)
    assert json.loads(power["values"]) == {"min": 0, "max": 99999, "scale": 1, "step": 1,
                                           "unit": "W"}
    assert "cur_power" not in {f["code"] for f in spec["functions"]}
    assert await client.ok("GET", f"/v1.0/devices/{PLUG}/specifications") == spec
    functions = await client.ok("GET", f"/v1.0/iot-03/devices/{CURTAIN}/functions")
    control = next(f for f in functions["functions"] if f["code"] == "control")
    assert json.loads(control["values"]) == {"range": ["open", "stop", "close", "continue"]}
    assert {"code", "name", "desc", "type", "values"} <= set(control)
    status = await client.ok("GET", f"/v1.0/devices/{SENSOR}/status")
    assert {"code": "va_temperature", "value": 215} in status
    assert await client.ok("GET", f"/v1.0/iot-03/devices/{SENSOR}/status") == status
    info = await client.ok("GET", f"/v1.0/devices/{LIGHT}")
    assert info["id"] == LIGHT
    assert info["online"] is True
    assert info["category"] == "dj"
    await client.fails(1000, "GET", "/v1.0/devices/nope/status")
    await client.fails(1000, "GET", "/v1.0/users/ay-nobody/devices")


async def test_commands(sim: TuyaSimulator, client: Client) -> None:
    path = f"/v1.0/devices/{THERMOSTAT}/commands"
    assert await client.ok("POST", path, body={"commands": [
        {"code": "temp_set", "value": 215}, {"code": "mode", "value": "auto"}]}) is True
    assert (sim.get_status(THERMOSTAT, "temp_set"), sim.get_status(THERMOSTAT, "mode")) == (
        215, "auto")
    assert await client.ok("POST", f"/v1.0/iot-03/devices/{LIGHT}/commands", body={
        "commands": [{"code": "colour_data_v2", "value": {"h": 10, "s": 20, "v": 30}}]}) is True
    assert json.loads(sim.get_status(LIGHT, "colour_data_v2")) == {"h": 10, "s": 20, "v": 30}
    assert await client.ok("POST", f"/v1.0/devices/{CURTAIN}/commands", body={
        "commands": [{"code": "percent_control", "value": 40}]}) is True
    assert sim.get_status(CURTAIN, "percent_state") == 40


@pytest.mark.parametrize(("device", "commands", "code"), [
    (THERMOSTAT, [{"code": "nope", "value": 1}], 2008),
    (THERMOSTAT, [{"code": "temp_current", "value": 100}], 2008),  # reported, not a function
    (THERMOSTAT, [{"code": "temp_set", "value": 351}], 2008),
    (THERMOSTAT, [{"code": "temp_set", "value": 20.5}], 2008),
    (THERMOSTAT, [{"code": "temp_set", "value": True}], 2008),
    (THERMOSTAT, [{"code": "mode", "value": "turbo"}], 2008),
    (THERMOSTAT, [{"code": "switch", "value": "true"}], 2008),
    (THERMOSTAT, [{"code": "mode", "value": "auto"}, {"code": "temp_set", "value": 1}], 2008),
    (LIGHT, [{"code": "colour_data_v2", "value": "{broken"}], 2008),
    (THERMOSTAT, [], 1100),
    (THERMOSTAT, "switch", 1109),
    (THERMOSTAT, [{"value": 1}], 1109),
    ("nope", [{"code": "switch", "value": True}], 1000),
])
async def test_command_failures(sim: TuyaSimulator, client: Client, device: str,
                                commands: Any, code: int) -> None:
    await client.fails(code, "POST", f"/v1.0/devices/{device}/commands",
                       body={"commands": commands})
    assert sim.get_status(THERMOSTAT, "mode") == "manual"  # all or nothing


async def test_commands_to_an_offline_device(sim: TuyaSimulator, client: Client) -> None:
    sim.set_online(LIGHT, False)
    await client.fails(2001, "POST", f"/v1.0/devices/{LIGHT}/commands",
                       body={"commands": [{"code": "switch_led", "value": False}]})
    assert sim.get_status(LIGHT, "switch_led") is True
    await client.fails(1100, "POST", f"/v1.0/devices/{LIGHT}/commands", body={})


# ---- message service ------------------------------------------------------------------------


def consumer_url(sim: TuyaSimulator, ack_timeout_ms: int = 3000, topic: str = "event") -> str:
    return (f"{sim.push_url}ws/v2/consumer/persistent/{sim.client_id}/out/{topic}/"
            f"{sim.client_id}-sub?ackTimeoutMillis={ack_timeout_ms}&subscriptionType=Failover")


def consumer(sim: TuyaSimulator, ack_timeout_ms: int = 3000, password: str | None = None,
             topic: str = "event") -> connect:
    headers = {"username": sim.client_id,
               "password": password or pulsar_password(sim.client_id, sim.secret)}
    return connect(consumer_url(sim, ack_timeout_ms, topic), additional_headers=headers)


async def receive(ws: ClientConnection) -> tuple[dict[str, Any], int, Any]:
    """The next frame, its protocol and its decrypted data."""
    async with asyncio.timeout(5):
        raw = await ws.recv()
    _message_id, payload, data = decode_push_frame(DEFAULT_SECRET, raw)
    frame: dict[str, Any] = json.loads(raw)
    return frame, payload["protocol"], data


async def test_status_reports_are_encrypted_and_acked(sim: TuyaSimulator) -> None:
    async with consumer(sim) as ws:
        await eventually(lambda: sim.push_connections == 1)
        sim.set_status(PLUG, "cur_power", 456)
        frame, protocol, data = await receive(ws)
        assert protocol == 4
        assert set(frame) >= {"messageId", "payload", "publishTime", "redeliveryCount"}
        assert data["devId"] == PLUG
        assert data["productKey"] == sim.device(PLUG).product_id
        assert data["dataId"]
        (item,) = data["status"]
        assert (item["code"], item["value"]) == ("cur_power", 456)
        assert isinstance(item["t"], int)
        await ws.send(json.dumps({"messageId": frame["messageId"]}))
        await eventually(lambda: sim.stats["push_acked"] == 1)
        assert sim.pending_messages == 0


async def test_command_results_are_reported(sim: TuyaSimulator, client: Client) -> None:
    async with consumer(sim) as ws:
        await eventually(lambda: sim.push_connections == 1)
        await client.ok("POST", f"/v1.0/devices/{CURTAIN}/commands",
                        body={"commands": [{"code": "control", "value": "close"}]})
        _frame, protocol, data = await receive(ws)
        assert protocol == 4
        assert {s["code"]: s["value"] for s in data["status"]} == {
            "control": "close", "work_state": "closing"}


def device_changes(sim: TuyaSimulator) -> None:
    """Offline, online, a rename, a newly paired device, a removal."""
    sim.set_online(SENSOR, False)
    sim.set_online(SENSOR, True)
    sim.rename_device(SENSOR, "Hall")
    sim.bind_device(metering_plug("vdevo169000000000099", "New Plug", HOME_ID, None))
    sim.remove_device(SENSOR)


async def test_online_offline_and_rename_events(sim: TuyaSimulator, client: Client) -> None:
    async with consumer(sim) as ws:
        await eventually(lambda: sim.push_connections == 1)
        device_changes(sim)
        seen = [await receive(ws) for _ in range(5)]
        assert [(p, d["bizCode"]) for _f, p, d in seen] == [
            (20, "offline"), (20, "online"), (20, "nameUpdate"), (20, "bindUser"),
            (20, "delete")]
        assert [d["devId"] for _f, _p, d in seen] == [SENSOR] * 3 + [
            "vdevo169000000000099", SENSOR]
        assert isinstance(seen[0][2]["bizData"]["time"], int)
        assert seen[2][2]["bizData"] == {"name": "Hall"}
        assert seen[3][2]["bizData"] == {"uid": USER_UID}
    listed = {d["id"] for d in await client.ok("GET", f"/v1.0/users/{USER_UID}/devices")}
    assert "vdevo169000000000099" in listed
    assert SENSOR not in listed


async def test_the_current_message_format(sim: TuyaSimulator, client: Client) -> None:
    """IoT Core: protocol 1000 property reports and 1001 device events, the device named inside
    ``bizData``."""
    sim.push_format = "current"
    async with consumer(sim) as ws:
        await eventually(lambda: sim.push_connections == 1)
        sim.set_statuses(PLUG, {"cur_power": 456, "switch_1": True})
        _frame, protocol, data = await receive(ws)
        assert (protocol, data["bizCode"], set(data)) == (
            1000, "devicePropertyMessage", {"bizCode", "bizData", "ts"})
        biz = data["bizData"]
        assert (biz["devId"], biz["productId"]) == (PLUG, sim.device(PLUG).product_id)
        assert biz["dataId"]
        assert [(p["code"], p["value"], p["dpId"]) for p in biz["properties"]] == [
            ("cur_power", 456, 3), ("switch_1", True, 1)]
        assert all(p["time"] == data["ts"] for p in biz["properties"])
        device_changes(sim)
        seen = [await receive(ws) for _ in range(5)]
        assert [(p, d["bizCode"]) for _f, p, d in seen] == [
            (1001, "deviceOffline"), (1001, "deviceOnline"), (1001, "deviceNameUpdate"),
            (1001, "deviceBindSpace"), (1001, "deviceUnbindSpace")]
        assert all("devId" not in d for _f, _p, d in seen)
        assert [d["bizData"]["devId"] for _f, _p, d in seen] == [SENSOR] * 3 + [
            "vdevo169000000000099", SENSOR]
        assert isinstance(seen[0][2]["bizData"]["time"], int)
        assert seen[2][2]["bizData"]["name"] == "Hall"
        assert seen[4][2]["bizData"]["uid"] == USER_UID
    listed = {d["id"] for d in await client.ok("GET", f"/v1.0/users/{USER_UID}/devices")}
    assert SENSOR not in listed


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="push_format"):
        TuyaSimulator(push_format="newest")
    with pytest.raises(ValueError, match="page_scheme"):
        TuyaSimulator(page_scheme="cursor")


async def test_unacked_messages_are_redelivered(sim: TuyaSimulator) -> None:
    async with consumer(sim, ack_timeout_ms=200) as ws:
        await eventually(lambda: sim.push_connections == 1)
        sim.set_status(SENSOR, "va_temperature", 222)
        first, _p, _d = await receive(ws)
        again, _p, data = await receive(ws)  # no ack: sent again after 200 ms
        assert again["messageId"] == first["messageId"]
        assert again["redeliveryCount"] >= 1 > first["redeliveryCount"]
        assert data["status"][0]["value"] == 222
        assert sim.stats["push_redelivered"] >= 1
        await ws.send(json.dumps({"messageId": first["messageId"]}))
        await eventually(lambda: sim.pending_messages == 0)


async def test_unacked_messages_go_to_the_next_consumer(sim: TuyaSimulator) -> None:
    async with consumer(sim, ack_timeout_ms=0) as ws:
        await eventually(lambda: sim.push_connections == 1)
        sim.set_status(SENSOR, "va_humidity", 61)
        lost, _p, _d = await receive(ws)
    await eventually(lambda: sim.push_connections == 0)
    sim.set_status(SENSOR, "va_humidity", 62)  # published while nobody listens
    async with consumer(sim) as ws:
        first, _p, data1 = await receive(ws)
        _second, _p, data2 = await receive(ws)
        assert first["messageId"] == lost["messageId"]
        assert first["redeliveryCount"] == 1
        assert [data1["status"][0]["value"], data2["status"][0]["value"]] == [61, 62]


async def test_dropped_consumers_get_their_messages_later(sim: TuyaSimulator) -> None:
    async with consumer(sim) as ws:
        await eventually(lambda: sim.push_connections == 1)
        sim.set_status(PLUG, "cur_power", 1)
        await receive(ws)
        await sim.drop_push_connections()
        assert sim.push_connections == 0
    async with consumer(sim) as ws:
        frame, _p, data = await receive(ws)
        assert frame["redeliveryCount"] == 1
        assert data["status"][0]["value"] == 1


async def test_consumer_refusals(sim: TuyaSimulator) -> None:
    with pytest.raises(InvalidStatus) as caught:
        async with consumer(sim, password="0" * 16):
            pass
    assert caught.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as caught:
        async with consumer(sim, topic="other"):
            pass
    assert caught.value.response.status_code == 404
    sim.push_enabled = False
    with pytest.raises(InvalidStatus) as caught:
        async with consumer(sim):
            pass
    assert caught.value.response.status_code == 503
    assert sim.stats["push_refused"] == 2


async def test_default_credentials_are_exported() -> None:
    assert len(DEFAULT_SECRET) == 32 + 3
    assert DEFAULT_CLIENT_ID
