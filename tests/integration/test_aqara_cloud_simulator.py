"""The Aqara cloud simulator over real sockets: an aiohttp client signing with the bridge's code,
and a real HTTP receiver for its pushes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.backends.aqara_cloud.sign import push_signs, signed_headers
from bridge.simulators.aqara_cloud import (
    MATTER_PREFIX,
    AqaraCloudSimulator,
    relay_board,
    sample_account,
    serve,
)
from bridge.simulators.sample_home import hub_speaker, smart_plug

pytestmark = pytest.mark.integration

PLUG = "lumi.158d0002c660dc"  # Kitchen Plug, off
LIGHT = "lumi1.54ef44d1e6a0"  # Dining Light
OFFLINE = "lumi.158d00045a1b2c"
MATTER_DOOR = "matt.2990fb3413ed87c9b7370000"
MATTER_LAMP = "matt.2990fb3413ed884726370000"
AIR = "lumi.158d0007aa01bc"
HUB = "lumi1.54ef44100000"  # Aqara Hub M3: the other devices hang off it


@pytest.fixture
async def sim() -> AsyncIterator[AqaraCloudSimulator]:
    simulator = AqaraCloudSimulator()
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Api:
    """A minimal signed client."""

    def __init__(self, sim: AqaraCloudSimulator, http: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.http = http
        self.token: str | None = None

    async def raw(self, body: bytes, headers: dict[str, str]) -> tuple[int, Any, Any]:
        async with self.http.post(self.sim.url, data=body, headers=headers) as response:
            text = await response.read()
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = text
            return response.status, parsed, response.headers

    async def call(self, intent: str, data: Any = None, *, token: str | None = "default",
                   app_key: str | None = None, time_ms: int | None = None,
                   drop: str | None = None) -> dict[str, Any]:
        if token == "default":
            token = None if intent.startswith("config.auth.") else self.token
        headers = signed_headers(self.sim.app_id, self.sim.key_id,
                                 app_key or self.sim.app_key, token, time_ms=time_ms)
        if drop is not None:
            del headers[drop]
        body = json.dumps({"intent": intent, "data": data}).encode()
        status, parsed, _ = await self.raw(body, headers)
        assert status == 200, (status, parsed)
        assert set(parsed) == {"code", "message", "msgDetails", "requestId", "result"}
        return dict(parsed)

    async def ok(self, intent: str, data: Any = None) -> Any:
        body = await self.call(intent, data)
        assert body["code"] == 0, body
        return body["result"]


@pytest.fixture
async def api(sim: AqaraCloudSimulator, http: aiohttp.ClientSession) -> Api:
    client = Api(sim, http)
    client.token, _ = sim.issue_tokens()
    return client


class Receiver:
    """A real HTTP endpoint for pushes; answers with ``statuses`` in turn, then 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], Any]] = []
        self.statuses: list[int] = []
        self.arrived = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/push", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/push"
        return self

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), json.loads(await request.read())))
        self.arrived.set()
        status = self.statuses.pop(0) if self.statuses else 200
        return web.json_response({"code": 0}, status=status)

    async def next(self, after: int) -> tuple[dict[str, str], Any]:
        async with asyncio.timeout(5):
            while len(self.requests) <= after:
                self.arrived.clear()
                await self.arrived.wait()
        return self.requests[after]


@pytest.fixture
async def receiver(sim: AqaraCloudSimulator) -> AsyncIterator[Receiver]:
    rec = await Receiver().start()
    sim.callback_url = rec.url
    yield rec
    assert rec.runner is not None
    await rec.runner.cleanup()


# ---- auth -----------------------------------------------------------------------------------


async def test_auth_flow_and_refresh(sim: AqaraCloudSimulator, api: Api) -> None:
    api.token = None
    result = await api.ok("config.auth.getAuthCode",
                          {"account": sim.account, "accountType": 0, "accessTokenValidity": "1h"})
    code = sim.auth_codes[sim.account]
    assert result == {"authCode": code}
    tokens = await api.ok("config.auth.getToken",
                          {"authCode": code, "account": sim.account, "accountType": 0})
    assert set(tokens) == {"accessToken", "refreshToken", "openId", "expiresIn"}
    assert tokens["expiresIn"] == "3600"
    assert tokens["openId"] == sim.open_id
    api.token = tokens["accessToken"]
    assert (await api.ok("query.device.info", {}))["totalCount"] == len(sample_account())
    # the code is single-use
    again = await api.call("config.auth.getToken",
                           {"authCode": code, "account": sim.account, "accountType": 0})
    assert again["code"] == 302
    # refresh: a new pair; the old access and refresh tokens stop working
    fresh = await api.ok("config.auth.refreshToken", {"refreshToken": tokens["refreshToken"]})
    assert fresh["accessToken"] != tokens["accessToken"]
    assert fresh["expiresIn"] == "3600"
    assert (await api.call("query.device.info", {}))["code"] == 2004
    reused = await api.call("config.auth.refreshToken", {"refreshToken": tokens["refreshToken"]})
    assert (reused["code"], reused["message"]) == (2006, "RefreshToken incorrect")
    api.token = fresh["accessToken"]
    assert (await api.call("query.device.info", {}))["code"] == 0


async def test_auth_errors(sim: AqaraCloudSimulator, api: Api) -> None:
    for data in ({"account": "nobody@example.com", "accountType": 0},
                 {"account": sim.account, "accountType": 1},
                 {"account": sim.account, "accountType": 0, "accessTokenValidity": "25h"},
                 {"account": sim.account, "accountType": 0, "accessTokenValidity": "forever"},
                 [1]):
        body = await api.call("config.auth.getAuthCode", data)
        assert body["code"] == 302, data
    assert (await api.call("config.auth.getToken", {"authCode": "000000",
                                                    "account": sim.account}))["code"] == 302
    assert (await api.call("config.auth.refreshToken", {"refreshToken": "nope"}))["code"] == 2006
    assert (await api.call("config.auth.refreshToken", {}))["code"] == 302


async def test_token_lifetimes(sim: AqaraCloudSimulator, api: Api) -> None:
    sim.access_ttl = 120
    access, refresh = sim.issue_tokens()
    api.token = access
    assert (await api.call("query.device.info"))["code"] == 0
    sim.expire_tokens()
    expired = await api.call("query.device.info")
    assert (expired["code"], expired["message"]) == (2005, "AccessToken expired")
    assert access not in sim.valid_access_tokens
    fresh = await api.ok("config.auth.refreshToken", {"refreshToken": refresh})
    assert fresh["expiresIn"] == "120"
    api.token, _ = sim.issue_tokens(ttl=-1)
    sim.expired_token_code = 108  # the table's older code for the same thing
    assert (await api.call("query.device.info"))["code"] == 108
    sim.refresh_ttl = -1
    _, dead = sim.issue_tokens()
    body = await api.call("config.auth.refreshToken", {"refreshToken": dead})
    assert (body["code"], body["message"]) == (2007, "RefreshToken expired")


# ---- headers and signature --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Appid", "Keyid", "Nonce", "Time", "Sign"])
async def test_missing_header_is_named(api: Api, name: str) -> None:
    body = await api.call("query.device.info", {}, drop=name)
    assert body["code"] == 305
    assert name in body["message"]


async def test_missing_token_is_absent(api: Api) -> None:
    body = await api.call("query.device.info", {}, drop="Accesstoken")
    assert (body["code"], body["message"]) == (109, "Token is absence")


async def test_signature_checks(sim: AqaraCloudSimulator, api: Api) -> None:
    assert (await api.call("query.device.info", app_key="wrong-key"))["code"] == 106
    stale = int(time.time() * 1000) - 6 * 60 * 1000
    body = await api.call("query.device.info", time_ms=stale)
    assert (body["code"], body["message"]) == (105, "Data package has expired")
    future = int(time.time() * 1000) + 6 * 60 * 1000
    assert (await api.call("query.device.info", time_ms=future))["code"] == 105
    assert (await api.call("query.device.info", token="not-a-token"))["code"] == 2004
    # the auth intents need no Accesstoken, and a header that is there is signed along
    assert (await api.call("config.auth.refreshToken", {"refreshToken": "x"},
                           token=api.token))["code"] == 2006
    # tampering with any signed header breaks the signature
    headers = signed_headers(sim.app_id, sim.key_id, sim.app_key, api.token)
    headers["Nonce"] = "another"
    status, body2, _ = await api.raw(json.dumps({"intent": "query.device.info"}).encode(), headers)
    assert (status, body2["code"]) == (200, 106)
    headers = signed_headers("other-app", sim.key_id, sim.app_key, api.token)
    _, body3, _ = await api.raw(json.dumps({"intent": "query.device.info"}).encode(), headers)
    assert body3["code"] == 106
    headers = signed_headers(sim.app_id, sim.key_id, sim.app_key, api.token)
    headers["Time"] = "yesterday"
    _, body4, _ = await api.raw(json.dumps({"intent": "query.device.info"}).encode(), headers)
    assert body4["code"] == 305


async def test_body_errors(sim: AqaraCloudSimulator, api: Api) -> None:
    headers = signed_headers(sim.app_id, sim.key_id, sim.app_key, api.token)
    _, body, _ = await api.raw(b"{nope", headers)
    assert body["code"] == 302
    _, body, _ = await api.raw(b'{"data": {}}', headers)
    assert body["code"] == 302
    assert (await api.call("no.such.intent", {}))["code"] == 306


# ---- device and spec intents ------------------------------------------------------------------


async def test_device_info_paging(api: Api) -> None:
    seen: list[str] = []
    page = 1
    while True:
        result = await api.ok("query.device.info", {"pageNum": page, "pageSize": 10})
        assert result["totalCount"] == 26
        if not result["data"]:
            break
        seen += [d["did"] for d in result["data"]]
        page += 1
    assert len(seen) == len(set(seen)) == 26
    entry = (await api.ok("query.device.info", {"dids": [OFFLINE]}))["data"][0]
    assert set(entry) >= {"did", "parentDid", "positionId", "createTime", "timeZone", "model",
                          "updateTime", "modelType", "state", "firmwareVersion", "deviceName"}
    assert entry["state"] == 0
    assert (await api.call("query.device.info", {"pageSize": 101}))["code"] == 302
    assert (await api.call("query.device.info", {"pageNum": 0}))["code"] == 302


async def test_specdevice_config(api: Api) -> None:
    result = await api.ok("spec.query.specdevice.config", {"dids": [MATTER_DOOR, PLUG, "x"]})
    (door,) = result["data"]
    assert door["deviceId"] == MATTER_DOOR
    assert door["model"].startswith(MATTER_PREFIX)
    assert door["types"]
    trait = door["endpoints"][0]["functions"][0]["traits"][1]
    assert trait["traitCode"] == "Reachable"
    assert trait["traitId"] == 32901
    assert trait["value"] == "1"
    assert isinstance(trait["time"], int)
    assert set(trait["attribute"]) >= {"readable", "writable", "subscribable", "type", "format"}
    too_many = await api.call("spec.query.specdevice.config", {"dids": [MATTER_DOOR] * 11})
    assert too_many["code"] == 302
    assert (await api.call("spec.query.specdevice.config", {"dids": []}))["code"] == 302


async def test_qlinkmodel_config(api: Api) -> None:
    models = ["lumi.plug.maeu01", "lumi.weather.v1", "aqara.matter.4447_8194", "no.such.model",
              "lumi.airrtc.agl001"]
    result = await api.ok("spec.query.qlinkmodel.config", {"models": models})
    assert set(result["data"]) == {"lumi.plug.maeu01", "lumi.weather.v1", "lumi.airrtc.agl001"}
    plug = result["data"]["lumi.plug.maeu01"]
    assert plug["model"] == "lumi.plug.maeu01"
    traits = [t for e in plug["endpoints"] for f in e["functions"] for t in f["traits"]]
    assert traits
    assert all("value" not in t for t in traits)
    assert (await api.call("spec.query.qlinkmodel.config", {"models": [*models, "x"]}))[
        "code"] == 302


async def test_query_trait_strings_and_limit(sim: AqaraCloudSimulator, api: Api) -> None:
    wanted = [{"deviceId": d.device_id, "endpointId": e, "functionCode": f, "traitCode": t.code}
              for d in sim.devices for e, f, t in d.iter_traits()]
    assert len(wanted) > 60
    result = await api.ok("spec.query.trait", {"traits": wanted[:60]})
    assert len(result["data"]) == 50  # only the first 50
    assert all(isinstance(r["value"], str) for r in result["data"])
    assert set(result["data"][0]) == {"functionCode", "endpointId", "time", "deviceId", "value",
                                      "traitCode"}
    one = await api.ok("spec.query.trait", {"traits": [
        {"deviceId": PLUG, "endpointId": 1, "functionCode": "Output", "traitCode": "OnOff"},
        {"deviceId": AIR, "endpointId": 1, "functionCode": "AirQuality",
         "traitCode": "PM2.5Density"},
        {"deviceId": PLUG, "endpointId": 1, "functionCode": "Output", "traitCode": "Nope"}]})
    assert one["data"][0]["value"] == "0"
    assert len(one["data"]) == 2
    bad = await api.call("spec.query.trait", {"traits": [{"deviceId": PLUG}]})
    assert bad["code"] == 302


async def test_write_trait(sim: AqaraCloudSimulator, api: Api) -> None:
    def item(device: str, ep: int, fn: str, trait: str, value: Any) -> dict[str, Any]:
        return {"deviceId": device, "endpointId": ep, "functionCode": fn, "traitCode": trait,
                "value": value}

    result = await api.ok("spec.write.trait", {"traits": [
        item(PLUG, 1, "Output", "OnOff", "1"),
        item(LIGHT, 1, "LevelControl", "CurrentLevel", "30"),
        item("lumi.not.mine", 1, "Output", "OnOff", "1"),
        item(PLUG, 1, "Output", "Nope", "1"),
        item(PLUG, 0, "BasicInformation", "FirmwareRevision", "9"),
        item(LIGHT, 1, "LevelControl", "CurrentLevel", "300"),
        item(LIGHT, 1, "Output", "OnOff", True),
    ]})
    codes = [r["code"] for r in result["data"]]
    assert codes == [0, 0, 603, 1008, 1007, 1004, 0]
    assert result["data"][0] == item(PLUG, 1, "Output", "OnOff", "1") | {"code": 0}
    assert sim.get_value(PLUG, 1, "Output", "OnOff") is True
    assert sim.get_value(LIGHT, 1, "LevelControl", "CurrentLevel") == 30
    sim.set_online(LIGHT, False)
    offline = await api.ok("spec.write.trait", {"traits": [
        item(LIGHT, 1, "Output", "OnOff", "0")]})
    assert offline["data"][0]["code"] == 602


async def test_write_trait_device_limit(api: Api) -> None:
    sim = AqaraCloudSimulator([relay_board(f"lumi.relay{i:02d}", f"R{i}", 6) for i in range(12)])
    await sim.start()
    try:
        api.sim = sim
        api.token, _ = sim.issue_tokens()
        items = [{"deviceId": f"lumi.relay{i:02d}", "endpointId": ch, "functionCode": "Output",
                  "traitCode": "OnOff", "value": "1"} for i in range(12) for ch in range(1, 7)]
        result = await api.ok("spec.write.trait", {"traits": items})  # 72 traits, 12 devices
        assert len(result["data"]) == 50
        assert sim.get_value("lumi.relay08", 2, "Output", "OnOff") is True  # item 50
        assert sim.get_value("lumi.relay08", 3, "Output", "OnOff") is False  # item 51: ignored
        ten = [i for i in items if int(str(i["deviceId"])[-2:]) < 10]  # 60 traits, 10 devices
        assert len((await api.ok("spec.write.trait", {"traits": ten}))["data"]) == 60
    finally:
        await sim.stop()


# ---- pushes -----------------------------------------------------------------------------------


async def test_subscribe_push_and_unsubscribe(sim: AqaraCloudSimulator, api: Api,
                                              receiver: Receiver) -> None:
    assert await api.ok("spec.config.trait.subscribe", {"traits": [
        {"subjectId": PLUG, "codePaths": ["1.Output.OnOff", "1.EnergyManagement.CurrentPower"],
         "attach": "hello"},
        {"subjectId": AIR, "codePaths": ["1.AirQuality.PM2.5Density"]}]}) is None
    sim.set_value(PLUG, 1, "EnergyManagement", "CurrentPower", 12.5)
    headers, body = await receiver.next(0)
    assert body["msgType"] == "spec_report"
    assert body["openId"] == sim.open_id
    (item,) = body["data"]
    assert item == {"subjectId": PLUG, "model": "lumi.plug.maeu01",
                    "codePath": "1.EnergyManagement.CurrentPower", "value": "12.5",
                    "time": item["time"], "statusCode": 0, "triggerSource": item["triggerSource"],
                    "attach": "hello"}
    assert headers["token"] == api.token
    assert "sign" not in headers  # signing is off by default
    assert "appkey" not in headers
    sim.set_value(AIR, 1, "AirQuality", "PM2.5Density", 33)
    _, body = await receiver.next(1)
    assert body["data"][0]["codePath"] == "1.AirQuality.PM2.5Density"
    assert body["data"][0]["attach"] is None
    # a write through the API is pushed as well
    await api.ok("spec.write.trait", {"traits": [{"deviceId": PLUG, "endpointId": 1,
                                                  "functionCode": "Output", "traitCode": "OnOff",
                                                  "value": "1"}]})
    _, body = await receiver.next(2)
    assert (body["data"][0]["codePath"], body["data"][0]["value"]) == ("1.Output.OnOff", "1")
    # unsubscribed or never subscribed: nothing
    await api.ok("spec.config.trait.unsubscribe", {"traits": [
        {"subjectId": PLUG, "codePaths": ["1.Output.OnOff"]}]})
    sim.set_value(PLUG, 1, "Output", "OnOff", False)
    sim.set_value(LIGHT, 1, "Output", "OnOff", False)
    await sim.push_idle()
    assert len(receiver.requests) == 3
    assert sim.push_delivered == 3


@pytest.mark.parametrize("signing", ["documented", "request"])
async def test_signed_pushes_carry_a_sign_the_bridge_computes_too(
        sim: AqaraCloudSimulator, api: Api, receiver: Receiver, signing: str) -> None:
    sim.push_signing = signing
    sim.push_token = "another-valid-token"
    assert await api.ok("spec.config.trait.subscribe", {"traits": [
        {"subjectId": PLUG, "codePaths": ["1.Output.OnOff"]}]}) is None
    sim.set_value(PLUG, 1, "Output", "OnOff", False)
    headers, _ = await receiver.next(0)
    assert headers["token"] == "another-valid-token"
    assert ("appkey" in headers) == (signing == "documented")
    assert headers["sign"] in push_signs(
        sim.app_id, sim.key_id, sim.app_key, appkey=headers.get("appkey", ""),
        token=headers["token"], nonce=headers["nonce"], time_ms=headers["time"])


async def test_subscribe_errors(api: Api) -> None:
    for traits in ([{"subjectId": "lumi.unknown", "codePaths": ["1.Output.OnOff"]}],
                   [{"subjectId": PLUG, "codePaths": ["1.Output.Nope"]}],
                   [{"subjectId": PLUG, "codePaths": ["Output.OnOff"]}],
                   [{"subjectId": PLUG, "codePaths": []}],
                   []):
        assert (await api.call("spec.config.trait.subscribe", {"traits": traits}))["code"] == 302


async def test_push_batches_changes(sim: AqaraCloudSimulator, api: Api,
                                    receiver: Receiver) -> None:
    await api.ok("spec.config.trait.subscribe", {"traits": [
        {"subjectId": LIGHT, "codePaths": ["1.LevelControl.CurrentLevel"]}]})
    for level in range(1, 31):
        sim.set_value(LIGHT, 1, "LevelControl", "CurrentLevel", level)
    await sim.push_idle()
    values = [i["value"] for _, body in receiver.requests for i in body["data"]]
    assert values == [str(n) for n in range(1, 31)]
    assert all(len(body["data"]) <= sim.push_batch for _, body in receiver.requests)


async def test_push_retries_then_gives_up(sim: AqaraCloudSimulator, api: Api,
                                          receiver: Receiver) -> None:
    await api.ok("spec.config.trait.subscribe", {"traits": [
        {"subjectId": PLUG, "codePaths": ["1.Output.OnOff"]}]})
    receiver.statuses = [500, 503]
    sim.set_value(PLUG, 1, "Output", "OnOff", True)
    await sim.push_idle()
    assert (sim.push_attempts, sim.push_errors, sim.push_delivered, sim.push_failed) == (3, 2, 1, 0)
    receiver.statuses = [500, 500, 500]
    sim.set_value(PLUG, 1, "Output", "OnOff", False)
    await sim.push_idle()
    assert (sim.push_attempts, sim.push_delivered, sim.push_failed) == (6, 1, 1)
    sim.callback_url = "http://127.0.0.1:1/nothing-listens-here"
    sim.set_value(PLUG, 1, "Output", "OnOff", True)
    await sim.push_idle()
    assert sim.push_failed == 2


async def test_event_messages(sim: AqaraCloudSimulator, receiver: Receiver) -> None:
    sim.add_device(smart_plug("lumi.158d000abc0001", "Garden Plug", create_time=1))
    _, body = await receiver.next(0)
    assert body["eventType"] == "subdevice_bind"
    assert body["data"]["did"] == "lumi.158d000abc0001"
    sim.rename_device("lumi.158d000abc0001", "Garden")
    sim.set_online("lumi.158d000abc0001", False)
    sim.remove_device("lumi.158d000abc0001")
    await sim.push_idle()
    kinds = [b["eventType"] for _, b in receiver.requests]
    assert kinds == ["subdevice_bind", "dev_name_change", "subdevice_offline", "unbind_sub_gw"]
    bodies = [b["data"] for _, b in receiver.requests]
    assert bodies[0]["parentDid"] == HUB
    assert bodies[1]["deviceName"] == "Garden"
    assert bodies[2]["cause"] == 12
    assert (bodies[3]["parentDid"], bodies[3]["cause"]) == (HUB, 12)


async def test_gateway_events_carry_the_sub_devices(sim: AqaraCloudSimulator, api: Api,
                                                    receiver: Receiver) -> None:
    listed = (await api.ok("query.device.info", {"pageSize": 100}))["data"]
    subs = {d["did"] for d in listed if d["parentDid"] == HUB}
    assert PLUG in subs
    sim.set_online(HUB, False)
    _, body = await receiver.next(0)
    assert body["eventType"] == "gateway_offline"
    assert set(body["data"]["subDids"]) == subs
    assert not any(d.online for d in sim.devices if d.device_id in subs)
    sim.set_online(HUB, True)
    sim.remove_device(HUB)
    await sim.push_idle()
    kinds = [b["eventType"] for _, b in receiver.requests]
    assert kinds[-2:] == ["gateway_online", "gateway_unbind"]
    unbind = receiver.requests[-1][1]["data"]
    assert set(unbind["subDids"]) == subs
    assert {d.device_id for d in sim.devices}.isdisjoint(subs | {HUB})


async def test_a_gateway_bound_with_sub_devices_names_them(sim: AqaraCloudSimulator, api: Api,
                                                           receiver: Receiver) -> None:
    gateway = "lumi1.54ef44300000"
    relays = [relay_board(f"lumi.relay{i}", f"Relay {i}", 2) for i in range(3)]
    subs = [r.device_id for r in relays]
    sim.add_device(hub_speaker(gateway, "Garage Hub", create_time=2), relays)
    await sim.push_idle()
    (event,) = [b for _, b in receiver.requests]
    assert (event["eventType"], event["data"]["did"]) == ("gateway_bind", gateway)
    assert event["data"]["subDids"] == subs  # and no subdevice_bind of their own
    listed = (await api.ok("query.device.info", {"dids": [gateway, *subs, PLUG]}))["data"]
    parents = {d["did"]: (d["parentDid"], d["modelType"]) for d in listed}
    assert parents == {gateway: ("", 1), PLUG: (HUB, 3), **dict.fromkeys(subs, (gateway, 3))}
    other = hub_speaker("lumi1.54ef44400000", "Hub", create_time=3)
    with pytest.raises(ValueError, match="already exists"):
        sim.add_device(other, relays[:1])  # nothing of it is bound
    with pytest.raises(ValueError, match="not a gateway"):
        sim.add_device(smart_plug("lumi.158d000abc0001", "Plug", create_time=3), [other])
    assert {other.device_id, "lumi.158d000abc0001"}.isdisjoint(d.device_id for d in sim.devices)
    sim.remove_device(gateway)
    await sim.push_idle()
    unbind = receiver.requests[-1][1]
    assert (unbind["eventType"], unbind["data"]["subDids"]) == ("gateway_unbind", subs)
    assert {d.device_id for d in sim.devices}.isdisjoint({gateway, *subs})
    assert PLUG in {d.device_id for d in sim.devices}  # the first gateway's devices stay


# ---- limits and faults ------------------------------------------------------------------------


async def test_rate_limit_http_429(sim: AqaraCloudSimulator, api: Api) -> None:
    sim.rate_calls, sim.rate_window = 3, 60.0
    for _ in range(3):
        await api.ok("query.device.info", {})
    headers = signed_headers(sim.app_id, sim.key_id, sim.app_key, api.token)
    body = json.dumps({"intent": "spec.write.trait", "data": {"traits": [
        {"deviceId": PLUG, "endpointId": 1, "functionCode": "Output", "traitCode": "OnOff",
         "value": "1"}]}}).encode()
    status, answer, response_headers = await api.raw(body, headers)
    assert status == 429
    assert answer["code"] == 429
    assert 1 <= int(response_headers["Retry-After"]) <= 60
    assert sim.get_value(PLUG, 1, "Output", "OnOff") is False  # not executed
    assert sim.rate_limited == 1


async def test_rate_limit_envelope_variant(sim: AqaraCloudSimulator, api: Api) -> None:
    sim.rate_calls, sim.rate_window, sim.rate_limit_style = 1, 60.0, "envelope"
    await api.ok("query.device.info", {})
    body = await api.call("query.device.info", {})
    assert body["code"] == 104


async def test_rate_window_slides(sim: AqaraCloudSimulator, api: Api) -> None:
    sim.rate_calls, sim.rate_window = 2, 0.3
    await api.ok("query.device.info", {})
    await api.ok("query.device.info", {})
    headers = signed_headers(sim.app_id, sim.key_id, sim.app_key, api.token)
    status, _, _ = await api.raw(b'{"intent":"query.device.info"}', headers)
    assert status == 429
    await asyncio.sleep(0.35)  # the window itself is what is tested here
    await api.ok("query.device.info", {})


async def test_garbage_and_latency(sim: AqaraCloudSimulator, api: Api) -> None:
    sim.garbage = True
    answers = []
    for _ in range(3):
        headers = signed_headers(sim.app_id, sim.key_id, sim.app_key, api.token)
        answers.append(await api.raw(b'{"intent":"query.device.info"}', headers))
    assert any(not isinstance(a[1], dict) or "code" not in a[1] or a[1]["code"] == "zero"
               for a in answers)
    sim.garbage = False
    sim.latency = 0.2
    started = time.monotonic()
    await api.ok("query.device.info", {})
    assert time.monotonic() - started >= 0.2
    assert sim.received[-1]["intent"] == "query.device.info"
    assert sim.received[-1]["headers"]["Appid"] == sim.app_id


async def test_serve_prints_a_backend_entry(capsys: pytest.CaptureFixture[str]) -> None:
    ready: asyncio.Future[AqaraCloudSimulator] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(0, "fixed-token-123", 5, 0.0, 1,
                                     on_ready=ready.set_result))
    try:
        sim = await asyncio.wait_for(ready, 5)
        assert "fixed-token-123" in sim.valid_access_tokens
        assert len(sim.devices) == 5
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    out = capsys.readouterr().out
    assert "type: aqara_cloud" in out
    assert "access_token: fixed-token-123" in out
