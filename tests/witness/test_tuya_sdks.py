"""Tuya's own clients against the Tuya simulator, as a new user would point them at it.

Every call the bridge makes has a witness here. Calls that still fail are asserted as failing,
with the reason: each is a path the bridge does not use or a limitation of that SDK version.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from bridge.backends.tuya.actions import rest_call, validate
from bridge.simulators.tuya import TuyaSimulator
from bridge.simulators.tuya_home import (
    HOME_ID,
    LIGHT,
    OTHER_ACCOUNT,
    OTHER_UID,
    PLUG,
    SOCKET,
    USER_UID,
)
from tests.witness.conftest import Driver

pytestmark = pytest.mark.integration

Start = Callable[[str], Awaitable[Driver]]
SWITCH_ON = {"commands": [{"code": "switch_1", "value": True}]}


@pytest.fixture
async def sim() -> AsyncIterator[TuyaSimulator]:
    simulator = TuyaSimulator()
    await simulator.start()
    yield simulator
    await simulator.stop()


async def connector(driver: Start, sim: TuyaSimulator) -> Driver:
    sdk = await driver("tuya_connector")
    await sdk.ok("init", url=sim.url, client_id=sim.client_id, secret=sim.secret)
    return sdk


async def call(sdk: Driver, method: str, path: str, query: dict[str, Any] | None = None,
               body: Any = None) -> dict[str, Any]:
    answer: dict[str, Any] = await sdk.ok("call", method=method, path=path, query=query,
                                          body=body)
    return answer


# ---- tuya-connector-python (Tuya's official SDK) --------------------------------------------


async def test_connector_token_devices_and_commands(driver: Start, sim: TuyaSimulator) -> None:
    sdk = await connector(driver, sim)
    assert (await sdk.ok("connect"))["success"] is True
    listed = await call(sdk, "GET", f"/v1.0/users/{USER_UID}/devices")
    assert PLUG in {d["id"] for d in listed["result"]}
    paged = await call(sdk, "GET", f"/v1.0/users/{USER_UID}/devices", {"page_size": 2})
    assert len(paged["result"]) == 2
    status = await call(sdk, "GET", f"/v1.0/devices/{PLUG}/status")
    assert {"code": "switch_1", "value": False} in status["result"]
    assert (await call(sdk, "POST", f"/v1.0/devices/{PLUG}/commands", body=SWITCH_ON)
            )["result"] is True
    assert sim.get_status(PLUG, "switch_1") is True
    for path in (f"/v1.0/devices/{PLUG}", f"/v1.0/iot-03/devices/{PLUG}/specification",
                 f"/v1.0/devices/{PLUG}/specifications", f"/v1.0/iot-03/devices/{PLUG}/functions"):
        assert (await call(sdk, "GET", path))["success"] is True, path
    batch = await call(sdk, "GET", "/v1.0/devices/status", {"device_ids": f"{PLUG},{LIGHT}"})
    assert [d["id"] for d in batch["result"]] == [PLUG, LIGHT]
    infos = await call(sdk, "GET", "/v1.0/devices/factory-infos", {"device_ids": PLUG})
    assert infos["result"][0]["id"] == PLUG


@pytest.mark.parametrize("loss", ["expired", "unknown"])
async def test_connector_recovers_from_a_refused_token(driver: Start, sim: TuyaSimulator,
                                                       loss: str) -> None:
    """tuya-connector-python renews on 1010 (a new token), then the next call works."""
    sdk = await connector(driver, sim)
    await sdk.ok("connect")
    first = await sdk.ok("token")
    if loss == "expired":
        sim.expire_tokens()
    else:
        sim.revoke_tokens()
    refused = await call(sdk, "GET", f"/v1.0/devices/{PLUG}/status")
    assert (refused["code"], refused["msg"]) == (1010, "token invalid")
    assert await sdk.ok("token") not in (None, first)  # renewed at once
    assert (await call(sdk, "GET", f"/v1.0/devices/{PLUG}/status"))["success"] is True
    assert sim.stats["tokens_issued"] == 2


async def test_connector_every_home_room_and_member_call(driver: Start,
                                                         sim: TuyaSimulator) -> None:
    """Every management command the bridge exposes, as the REST call the bridge sends."""
    sdk = await connector(driver, sim)
    await sdk.ok("connect")

    async def run(command: str, **args: Any) -> Any:
        rest = rest_call(command, validate(command, args, {"uid": USER_UID}))
        answer = await call(sdk, rest.method, rest.path, dict(rest.query), rest.body)
        assert answer["success"] is True, (command, answer)
        return answer["result"]

    home = await run("tuya/home/add", home={"name": "Witness Home", "geo_name": "Hangzhou",
                                            "lat": 30.1, "lon": 120.5}, rooms=["Hall"])
    assert await run("tuya/home/edit", home_id=home, name="Witness Home 2") is True
    assert (await run("tuya/home/get", home_id=home))["name"] == "Witness Home 2"
    assert await run("tuya/home/devices", home_id=home) == []
    room = await run("tuya/room/add", home_id=HOME_ID, name="Study")
    assert await run("tuya/room/edit", home_id=HOME_ID, room_id=room, name="Library") is True
    rooms = await run("tuya/room/list", home_id=HOME_ID)
    assert "Library" in {r["name"] for r in rooms["rooms"]}
    assert await run("tuya/room/devices/add", home_id=HOME_ID, room_id=room,
                     device_ids=[SOCKET, LIGHT]) is True
    assert await run("tuya/room/devices/edit", home_id=HOME_ID, room_id=room,
                     device_ids=[LIGHT]) is True
    assert [d["id"] for d in await run("tuya/room/devices", home_id=HOME_ID, room_id=room)
            ] == [LIGHT]
    assert await run("tuya/room/devices/remove", home_id=HOME_ID, room_id=room,
                     device_ids=[LIGHT]) is True
    assert sim.device(LIGHT).room_id is None
    assert await run("tuya/member/add", home_id=HOME_ID, country_code=OTHER_ACCOUNT[0],
                     member_account=OTHER_ACCOUNT[1], name="Li") is True
    assert await run("tuya/member/authority", home_id=HOME_ID, uid=OTHER_UID,
                     admin=True) is True
    assert OTHER_UID in {m["uid"] for m in await run("tuya/member/list", home_id=HOME_ID)}
    assert [h["home_id"] for h in await run("tuya/member/homes", uid=OTHER_UID)] == [HOME_ID]
    assert await run("tuya/member/delete", home_id=HOME_ID, uid=OTHER_UID) is True
    assert await run("tuya/room/delete", home_id=HOME_ID, room_id=room) is True
    assert await run("tuya/home/delete", home_id=home) is True


@pytest.mark.parametrize("encryption", ["aes_ecb", "aes_gcm"])
async def test_connector_pulsar_connect_decrypt_ack(driver: Start, sim: TuyaSimulator,
                                                    encryption: str) -> None:
    """TuyaOpenPulsar: connects with its password, decrypts and acks every message. It only
    knows AES-ECB: an ``em: aes_gcm`` message fails in its handler (which still acks it)."""
    sim.push_encryption = encryption
    sdk = await connector(driver, sim)
    await sdk.ok("pulsar_start", push_url=sim.push_url, topic=sim.push_topic)
    await until(lambda: sim.push_connections == 1)
    sim.set_status(PLUG, "switch_1", True)
    sim.rename_device(PLUG, "Desk Plug")
    wanted = 2 if encryption == "aes_ecb" else 0
    received = await sdk.ok("pulsar_wait", count=2, timeout=3 if wanted == 0 else 20)
    await until(lambda: sim.pending_messages == 0)  # acked, nothing redelivered
    assert sim.stats["push_acked"] == 2
    assert len(received) == wanted
    if received:
        assert received[0]["devId"] == PLUG
        assert received[0]["status"][0]["value"] is True
        assert received[1]["bizCode"] == "nameUpdate"
    await sdk.ok("pulsar_stop")


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait until the simulator's state says so (the SDK runs in another process)."""
    async with asyncio.timeout(timeout):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.02)


# ---- tinytuya (Cloud) -----------------------------------------------------------------------


async def tinytuya(driver: Start, sim: TuyaSimulator) -> Driver:
    sdk = await driver("tinytuya")
    started = await sdk.ok("init", host=f"127.0.0.1:{sim.port}", client_id=sim.client_id,
                           secret=sim.secret)
    assert started["error"] is None, started
    assert started["token"]
    return sdk


async def test_tinytuya_cloud_device_calls(driver: Start, sim: TuyaSimulator) -> None:
    sdk = await tinytuya(driver, sim)

    async def device(name: str, **args: Any) -> Any:
        return await sdk.ok("device_call", name=name, device=PLUG, **args)

    assert {"code": "switch_1", "value": False} in (await device("getstatus"))["result"]
    assert (await device("getfunctions"))["result"]["functions"]
    assert (await device("getproperties"))["result"]["status"]
    assert (await device("getdps"))["result"]["functions"]  # /v1.1/devices/{id}/specifications
    assert await device("getconnectstatus") is True
    assert (await device("sendcommand", commands=SWITCH_ON))["success"] is True
    assert sim.get_status(PLUG, "switch_1") is True
    listed = await sdk.ok("cloudrequest", url=f"/v1.0/users/{USER_UID}/devices")
    assert PLUG in {d["id"] for d in listed["result"]}
    infos = await sdk.ok("cloudrequest", url="/v1.0/devices/factory-infos",
                         query={"device_ids": PLUG})
    assert infos["result"][0]["id"] == PLUG
    # getdevices() lists through /v1.0/iot-01/associated-users/devices (all the project's
    # devices), a path the bridge does not use and the simulator does not serve
    everything = await sdk.ok("device_call", name="getdevices", device=None)
    assert everything["code"] == 1108


@pytest.mark.parametrize("loss", ["expired", "unknown"])
async def test_tinytuya_recovers_from_a_refused_token(driver: Start, sim: TuyaSimulator,
                                                      loss: str) -> None:
    """tinytuya renews when an answer says "token invalid", and repeats the call once."""
    sdk = await tinytuya(driver, sim)
    first = await sdk.ok("token")
    if loss == "expired":
        sim.expire_tokens()
    else:
        sim.revoke_tokens()
    status = await sdk.ok("device_call", name="getstatus", device=PLUG)
    assert status["success"] is True
    assert await sdk.ok("token") != first
    assert sim.stats["tokens_issued"] == 2
    assert [r["code"] for r in sim.requests_to("device.status")] == [1010, 0]


# ---- tuya-iot-py-sdk ------------------------------------------------------------------------


async def tuya_iot(driver: Start, sim: TuyaSimulator) -> Driver:
    sdk = await driver("tuya_iot")
    await sdk.ok("init", url=sim.url, client_id=sim.client_id, secret=sim.secret)
    assert (await sdk.ok("simple_token"))["success"] is True
    return sdk


async def test_tuya_iot_calls_and_refresh(driver: Start, sim: TuyaSimulator) -> None:
    sdk = await tuya_iot(driver, sim)
    status = await call(sdk, "GET", f"/v1.0/devices/{PLUG}/status")
    assert status["success"] is True
    assert (await call(sdk, "POST", f"/v1.0/iot-03/devices/{PLUG}/commands", body=SWITCH_ON)
            )["success"] is True
    homes = await call(sdk, "GET", f"/v1.0/users/{USER_UID}/homes")
    assert HOME_ID in {h["home_id"] for h in homes["result"]}
    first = await sdk.ok("token")
    await sdk.ok("expire_locally")  # its refresh: GET /v1.0/token/{refresh_token}
    assert (await call(sdk, "GET", f"/v1.0/devices/{PLUG}"))["success"] is True
    assert await sdk.ok("token") != first
    assert sim.stats["tokens_refreshed"] == 1


async def test_tuya_iot_renews_only_through_app_user_login(driver: Start,
                                                           sim: TuyaSimulator) -> None:
    """On 1010 tuya-iot-py-sdk logs in again through its app-user login path, which the bridge
    does not use (it runs the project in simple mode) and the simulator does not serve: the
    login answers 1108, and the SDK is left without a token."""
    sdk = await tuya_iot(driver, sim)
    sim.expire_tokens()
    refused = await call(sdk, "GET", f"/v1.0/devices/{PLUG}/status")
    assert refused["code"] == 1010
    assert await sdk.ok("token") is None
    login = sim.received[-1]
    assert (login["path"], login["code"]) == (
        "/v1.0/iot-01/associated-users/actions/authorized-login", 1108)
