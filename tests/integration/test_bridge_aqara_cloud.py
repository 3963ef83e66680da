"""The bridge end to end with the Aqara cloud backend: simulator ⇄ daemon ⇄ real Mosquitto ⇄ probe.

Every test runs :class:`bridge.app.Daemon` from a YAML config with ``type: aqara_cloud``; pushes
travel over real HTTP from the simulator to the daemon's callback receiver.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.app import Daemon
from bridge.backends.aqara_cloud.client import AqaraCloudBackend
from bridge.backends.aqara_cloud.sign import now_ms
from bridge.cli import check
from bridge.config import Config, parse_config
from bridge.outputs.discovery import DiscoveryOptions, device_object_id
from bridge.simulators.aqara_cloud import AqaraCloudSimulator, relay_board, sample_account
from bridge.simulators.sample_home import SimDevice, hub_speaker, smart_plug
from tests.integration.conftest import running
from tests.logwatch import LogWatch
from tests.mosquitto import Mosquitto, free_port
from tests.mqtt_probe import MqttProbe, eventually, synced

pytestmark = pytest.mark.integration

PLUG = "lumi.158d0002c660dc"  # Kitchen Plug (off), friendly name kitchen_plug
PLUG_ONOFF = "aqara/kitchen_plug/1/Output/OnOff"
THERMOSTAT = "lumi1.54ef448cc210"
OFFLINE = "lumi.158d00045a1b2c"
MATTER_LAMP = "matt.2990fb3413ed884726370000"
AIR = "lumi.158d0007aa01bc"


class Cloud:
    """The simulator plus the credentials and options a test's config is made of."""

    def __init__(self, sim: AqaraCloudSimulator) -> None:
        self.sim = sim
        self.access, self.refresh = sim.issue_tokens()
        self.callback_port = free_port()

    @property
    def callback_url(self) -> str:
        return f"http://127.0.0.1:{self.callback_port}/aqara/push"

    def config(self, mosquitto: Mosquitto, *, push: bool = True, poll: float = 0,
               app_key: str | None = None, rate: str = "", token_file: Path | None = None,
               window_ms: int = 150) -> Config:
        lines = [
            f"mqtt: {{url: \"{mosquitto.url}\", base_topic: aqara, keepalive: 10}}",
            "backends:",
            "  - type: aqara_cloud",
            "    name: cloud",
            f"    url: \"{self.sim.url}\"",
            f"    app_id: {self.sim.app_id}",
            f"    key_id: \"{self.sim.key_id}\"",
            f"    app_key: \"{app_key or self.sim.app_key}\"",
            f"    access_token: \"{self.access}\"",
            f"    refresh_token: \"{self.refresh}\"",
            f"    account: {self.sim.account}",
            f"    poll_interval: {poll}",
            "    request_timeout: 5",
            "    reconnect_max_delay: 2",
        ]
        if push:
            lines.append(f"    callback: {{listen: \"127.0.0.1:{self.callback_port}\", "
                         "path: /aqara/push}")
            self.sim.callback_url = self.callback_url
        else:
            self.sim.callback_url = None
        if rate:
            lines.append(f"    rate_limit: {rate}")
        if token_file is not None:
            lines.append(f"    token_file: \"{token_file}\"")
        lines += ["devices:", f"  {PLUG}: {{name: kitchen_plug}}",
                  f"bridge: {{write_window_ms: {window_ms}}}"]
        return parse_config("\n".join(lines) + "\n", "test-config.yaml")


@pytest.fixture
async def sim() -> AsyncIterator[AqaraCloudSimulator]:
    simulator = AqaraCloudSimulator(sample_account())
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
def cloud(sim: AqaraCloudSimulator) -> Cloud:
    return Cloud(sim)


async def started(probe: MqttProbe) -> None:
    """Wait until the bridge is online and its first snapshot is published."""
    await probe.value("aqara/bridge/state", "online")
    await probe.wait_for(lambda: probe.last.get("aqara/bridge/devices"))


def backend_of(daemon: Daemon) -> AqaraCloudBackend:
    backend = daemon.backends[0]
    assert isinstance(backend, AqaraCloudBackend)
    return backend


def writes(sim: AqaraCloudSimulator) -> list[dict[str, Any]]:
    """The spec.write.trait calls the cloud answered (any code)."""
    return sim.intents("spec.write.trait")


async def test_snapshot_is_published_retained(mosquitto: Mosquitto, cloud: Cloud,
                                              probe: MqttProbe) -> None:
    async with running(Daemon(cloud.config(mosquitto))):
        await started(probe)
        devices = probe.last["aqara/bridge/devices"].json()
        assert len(devices) == len(sample_account())
        plug = next(d for d in devices if d["id"] == PLUG)
        assert (plug["friendly_name"], plug["backend"], plug["name"]) == (
            "kitchen_plug", "cloud", "Kitchen Plug / Kettle")
        assert await probe.value(PLUG_ONOFF) == "false"
        assert await probe.value("aqara/kitchen_plug/1/EnergyManagement/CumulativeEnergyConsumption"
                                 ) == "41.7"
        assert await probe.value(f"aqara/{MATTER_LAMP}/1/Output/OnOff") in ("true", "false")
        assert await probe.value(f"aqara/{AIR}/1/AirQuality/PM2.5Density")
        assert await probe.value(f"aqara/{THERMOSTAT}/1/Thermostat/HeaterCoolerMode")
        assert await probe.value("aqara/kitchen_plug/availability") == "online"
        assert await probe.value(f"aqara/{OFFLINE}/availability") == "offline"
        document = json.loads(await probe.value("aqara/kitchen_plug"))
        assert document["1"]["Output"]["OnOff"] is False
        info = probe.last["aqara/bridge/info"].json()
        (backend,) = info["backends"]
        assert backend["connected"] is True
        assert backend["type"] == "aqara_cloud"
        assert backend["mode"] == "push"
        assert backend["subscribed_traits"] > 100
        # both spec paths were used, within their limits
        spec_calls = cloud.sim.intents("spec.query.specdevice.config")
        model_calls = cloud.sim.intents("spec.query.qlinkmodel.config")
        assert spec_calls
        assert model_calls
        assert all(len(c["data"]["dids"]) <= 10 for c in spec_calls)
        assert all(len(c["data"]["models"]) <= 5 for c in model_calls)
        assert all(len(c["data"]["traits"]) <= 50 for c in cloud.sim.intents("spec.query.trait"))
        assert all(c["code"] == 0 for c in cloud.sim.received)
        late = await MqttProbe(probe.port, ["aqara/#"]).start()
        try:
            await synced(late)
            assert late.last[PLUG_ONOFF].retain
            assert late.last[PLUG_ONOFF].text == "false"
        finally:
            late.stop()
        await synced(probe)
    for message in probe.messages:
        for secret in (cloud.sim.app_key, cloud.access, cloud.refresh):
            assert secret.encode() not in message.payload, message.topic


async def test_push_via_callback_reaches_the_topic(mosquitto: Mosquitto, cloud: Cloud,
                                                   probe: MqttProbe) -> None:
    async with running(Daemon(cloud.config(mosquitto))) as daemon:
        await started(probe)
        calls = len(cloud.sim.received)
        cloud.sim.set_value(PLUG, 1, "EnergyManagement", "CurrentPower", 1234.5)
        await probe.value("aqara/kitchen_plug/1/EnergyManagement/CurrentPower", "1234.5")
        cloud.sim.set_value(AIR, 1, "AirQuality", "PM2.5Density", 77)
        await probe.value(f"aqara/{AIR}/1/AirQuality/PM2.5Density", "77")
        assert len(cloud.sim.received) == calls  # pushes, no polling
        assert backend_of(daemon).pushes_received >= 2
        assert cloud.sim.push_failed == 0


async def test_polling_mode_reaches_the_topic(mosquitto: Mosquitto, cloud: Cloud,
                                              probe: MqttProbe) -> None:
    async with running(Daemon(cloud.config(mosquitto, push=False, poll=0.3))) as daemon:
        await started(probe)
        assert cloud.sim.subscriptions == {}
        cloud.sim.set_value(PLUG, 1, "EnergyManagement", "CurrentPower", 321.0)
        await probe.value("aqara/kitchen_plug/1/EnergyManagement/CurrentPower", "321")
        cloud.sim.set_online(PLUG, False)  # Reachable goes false: the device is offline
        await probe.value("aqara/kitchen_plug/availability", "offline")
        assert backend_of(daemon).polls >= 1
        info = probe.last["aqara/bridge/info"].json()["backends"][0]
        assert info["mode"] == "poll"


async def test_set_round_trip_with_push(mosquitto: Mosquitto, cloud: Cloud,
                                        probe: MqttProbe) -> None:
    async with running(Daemon(cloud.config(mosquitto))):
        await started(probe)
        await probe.publish(f"{PLUG_ONOFF}/set", "ON")
        assert await probe.value(PLUG_ONOFF, "true") == "true"
        assert cloud.sim.get_value(PLUG, 1, "Output", "OnOff") is True
        (request,) = writes(cloud.sim)
        assert request["data"] == {"traits": [{"deviceId": PLUG, "endpointId": 1,
                                               "functionCode": "Output", "traitCode": "OnOff",
                                               "value": "1"}]}
        await probe.publish(f"aqara/{THERMOSTAT}/set", json.dumps(
            {"1": {"Thermostat": {"SetTemperature": 22.5, "HeaterCoolerMode": "Heat"}}}))
        await probe.value(f"aqara/{THERMOSTAT}/1/Thermostat/SetTemperature", "22.5")
        await probe.value(f"aqara/{THERMOSTAT}/1/Thermostat/HeaterCoolerMode", "Heat")
        values = [t["value"] for t in writes(cloud.sim)[1]["data"]["traits"]]
        assert values == ["22.5", cloud.sim.get_value(THERMOSTAT, 1, "Thermostat",
                                                      "HeaterCoolerMode")]
        assert all(isinstance(v, str) for v in values)


async def test_set_round_trip_in_polling_mode(mosquitto: Mosquitto, cloud: Cloud,
                                              probe: MqttProbe) -> None:
    """No push and a slow poll: the written trait is read back, state follows the hub."""
    async with running(Daemon(cloud.config(mosquitto, push=False, poll=3600))):
        await started(probe)
        await probe.publish(f"{PLUG_ONOFF}/set", "ON")
        assert await probe.value(PLUG_ONOFF, "true") == "true"
        assert writes(cloud.sim)[0]["data"]["traits"][0]["value"] == "1"


async def test_hub_refusal_is_reported(mosquitto: Mosquitto, cloud: Cloud,
                                       probe: MqttProbe) -> None:
    async with running(Daemon(cloud.config(mosquitto))):
        await started(probe)
        # the bridge still believes the light is online; the cloud says 602 for the item
        light = "lumi1.54ef44d1e6a0"
        cloud.sim.set_online(light, False, notify=False)
        start = len(probe.messages)
        await probe.publish(f"aqara/{light}/1/Output/OnOff/set", "OFF")
        entry = (await probe.next_on("aqara/bridge/log", start)).json()
        assert "offline" in entry["message"]
        assert "602" in entry["message"]


async def test_writes_are_chunked_at_the_limits(mosquitto: Mosquitto, probe: MqttProbe) -> None:
    """120 traits of 23 devices in one coalesced batch: 3 calls, ≤ 10 devices and ≤ 50 traits."""
    boards = [relay_board(f"lumi.relay{i:02d}", f"Relay {i}", 10 if i == 22 else 5)
              for i in range(23)]
    sim = AqaraCloudSimulator(boards)
    await sim.start()
    cloud = Cloud(sim)
    try:
        async with running(Daemon(cloud.config(mosquitto, window_ms=2000))):
            await started(probe)
            for board in boards:
                channels = {str(ep.endpoint_id): {"Output": {"OnOff": "ON"}}
                            for ep in board.endpoints if ep.endpoint_id}
                await probe.publish(f"aqara/{board.device_id}/set", json.dumps(channels))
            for board in boards:
                for ep in board.endpoints[1:]:
                    await probe.value(f"aqara/{board.device_id}/{ep.endpoint_id}/Output/OnOff",
                                      "true")
        calls = writes(sim)
        items = [t for c in calls for t in c["data"]["traits"]]
        assert len(items) == 120
        # the first board at once (leading edge), then 115 traits of 22 devices gathered:
        # 1 + max(ceil(115 / 50), ceil(22 / 10))
        assert len(calls) == 4
        for call in calls:
            traits = call["data"]["traits"]
            assert len(traits) <= 50
            assert len({t["deviceId"] for t in traits}) <= 10
        assert {t["value"] for t in items} == {"1"}
        assert all(c["code"] == 0 for c in calls)
    finally:
        await sim.stop()


async def test_expired_token_mid_run_loses_nothing(mosquitto: Mosquitto, cloud: Cloud,
                                                   probe: MqttProbe, tmp_path: Path) -> None:
    token_file = tmp_path / "aqara-tokens.json"
    config = cloud.config(mosquitto, token_file=token_file, window_ms=0)
    cloud.sim.expired_token_code = 108  # the older code of Aqara's table (2005 is below)
    async with running(Daemon(config)) as daemon:
        await started(probe)
        cloud.sim.expire_tokens()
        light = "lumi1.54ef44d1e6a0"
        # three writes in three separate hub calls, all in flight when the token is refused
        await probe.publish(f"{PLUG_ONOFF}/set", "ON")
        await probe.publish(f"aqara/{light}/1/LevelControl/CurrentLevel/set", "33")
        await probe.publish(f"aqara/{THERMOSTAT}/1/Thermostat/SetTemperature/set", "19")
        await probe.value(PLUG_ONOFF, "true")
        await probe.value(f"aqara/{light}/1/LevelControl/CurrentLevel", "33")
        await probe.value(f"aqara/{THERMOSTAT}/1/Thermostat/SetTemperature", "19")
        assert len(cloud.sim.intents("config.auth.refreshToken")) == 1
        def items(code: int) -> list[tuple[str, str]]:
            return [(t["deviceId"], t["traitCode"]) for c in writes(cloud.sim)
                    if c["code"] == code for t in c["data"]["traits"]]

        assert sorted(items(0)) == sorted([(PLUG, "OnOff"), (light, "CurrentLevel"),
                                           (THERMOSTAT, "SetTemperature")])
        assert items(108)  # refused with the expired token, then sent again
        assert set(items(108)) <= set(items(0))
        # a write sent with the old token just after the renewal meets 2004 (a replaced token):
        # it is retried with the new one, without a second renewal
        assert {c["code"] for c in writes(cloud.sim)} - {2004} == {0, 108}
        backend = backend_of(daemon)
        assert backend.access_token in cloud.sim.valid_access_tokens
        assert cloud.refresh not in cloud.sim.valid_refresh_tokens  # the config's pair is used up
        stored = json.loads(token_file.read_text())
        assert stored["access_token"] == backend.access_token
        assert stored["refresh_token"] == backend.refresh_token
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        # pushes keep working with the new token
        cloud.sim.set_value(PLUG, 1, "EnergyManagement", "CurrentPower", 5.5)
        await probe.value("aqara/kitchen_plug/1/EnergyManagement/CurrentPower", "5.5")
    # a restart with the same (now stale) config picks the pair up from the token file
    async with running(Daemon(config)) as daemon:
        await probe.value("aqara/bridge/state", "online")
        await probe.wait_for(lambda: (m := probe.last.get("aqara/bridge/info"))
                             and m.json()["backends"][0]["connected"])
        assert backend_of(daemon).renewals == 0
    for message in probe.messages:
        for secret in (stored["access_token"], stored["refresh_token"], cloud.refresh):
            assert secret.encode() not in message.payload


@pytest.fixture
def broker_check_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    """``check`` without its broker probe: only the backend's part is under test here."""

    async def reachable(_self: Any) -> None:
        return None

    monkeypatch.setattr("bridge.cli.MqttLink.probe", reachable)


@pytest.mark.usefixtures("broker_check_ok")
async def test_wrong_app_key_is_a_clear_error(mosquitto: Mosquitto, cloud: Cloud,
                                              probe: MqttProbe,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    wrong = "definitely-not-the-app-key"
    config = cloud.config(mosquitto, app_key=wrong)
    async with running(Daemon(config)):
        info = await probe.wait_for(
            lambda: (m := probe.last.get("aqara/bridge/info"))
            and "authentication failed" in m.json()["backends"][0]["detail"] and m)
        backend = info.json()["backends"][0]
        assert backend["connected"] is False
        assert "app_key" in backend["detail"]
        assert "106" in backend["detail"]
    assert await check(config) == 1
    out = capsys.readouterr().out
    assert "backend cloud (aqara_cloud): FAILED: authentication failed" in out
    assert "code 106" in out
    assert wrong not in out
    for message in probe.messages:
        assert wrong.encode() not in message.payload


@pytest.mark.usefixtures("broker_check_ok")
async def test_check_reports_the_device_count(mosquitto: Mosquitto, cloud: Cloud,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert await check(cloud.config(mosquitto)) == 0
    assert f"backend cloud (aqara_cloud): ok, {len(sample_account())} devices" in (
        capsys.readouterr().out)


@pytest.mark.parametrize("style", ["http", "envelope"])
async def test_rate_limit_hit_backs_off_and_loses_nothing(mosquitto: Mosquitto, cloud: Cloud,
                                                          probe: MqttProbe, style: str) -> None:
    """The cloud allows 4 calls a second; the bridge was told 1000: it gets refused and waits."""
    cloud.sim.rate_calls, cloud.sim.rate_window = 4, 1.0
    cloud.sim.rate_limit_style = style
    config = cloud.config(mosquitto, rate="{calls: 1000, per_seconds: 1}")
    async with running(Daemon(config)) as daemon:
        await started(probe)
        assert cloud.sim.rate_limited > 0
        assert backend_of(daemon).rate_limited > 0
        assert len(probe.last["aqara/bridge/devices"].json()) == len(sample_account())
        await probe.publish(f"{PLUG_ONOFF}/set", "ON")
        await probe.value(PLUG_ONOFF, "true")
        assert cloud.sim.get_value(PLUG, 1, "Output", "OnOff") is True


async def test_client_limiter_stays_within_the_limit(mosquitto: Mosquitto, cloud: Cloud,
                                                     probe: MqttProbe) -> None:
    """Told the real limit (5 calls a second), the bridge is never refused."""
    cloud.sim.rate_calls, cloud.sim.rate_window = 5, 1.0
    config = cloud.config(mosquitto, rate="{calls: 5, per_seconds: 1}")
    async with running(Daemon(config)):
        await started(probe)
        await probe.publish(f"{PLUG_ONOFF}/set", "ON")
        await probe.value(PLUG_ONOFF, "true")
    assert len(cloud.sim.received) > 10
    assert cloud.sim.rate_limited == 0


async def test_device_lifecycle_events(mosquitto: Mosquitto, cloud: Cloud,
                                       probe: MqttProbe) -> None:
    new_id = "lumi.158d000abc0001"
    async with running(Daemon(cloud.config(mosquitto))):
        await started(probe)
        start = len(probe.messages)
        cloud.sim.add_device(smart_plug(new_id, "Garden Plug", create_time=1, on=True))
        await probe.value(f"aqara/{new_id}/1/Output/OnOff", "true")
        added = (await probe.next_on("aqara/bridge/event", start)).json()
        assert (added["type"], added["device"]["id"]) == ("device_added", new_id)
        cloud.sim.set_value(new_id, 1, "Output", "OnOff", False)  # subscribed on arrival
        await probe.value(f"aqara/{new_id}/1/Output/OnOff", "false")
        start = len(probe.messages)
        cloud.sim.rename_device(new_id, "Garden Plug 2")
        renamed = (await probe.next_on("aqara/bridge/event", start)).json()
        assert renamed["type"] == "device_renamed"
        cloud.sim.set_online(new_id, False)
        await probe.value(f"aqara/{new_id}/availability", "offline")
        start = len(probe.messages)
        cloud.sim.remove_device(new_id)
        await probe.value(f"aqara/{new_id}/1/Output/OnOff", "")
        await probe.wait_for(lambda: any(
            m.topic == "aqara/bridge/event" and m.json()["type"] == "device_removed"
            for m in probe.messages[start:]))


@pytest.mark.parametrize(("signing", "token"), [
    ("off", None),  # the page's default: token, time, nonce; no sign
    ("documented", "a-token-the-bridge-never-held"),  # admitted by its sign alone
    ("request", "a-token-the-bridge-never-held"),
])
async def test_pushes_in_each_documented_header_form_are_accepted(
        mosquitto: Mosquitto, cloud: Cloud, probe: MqttProbe, signing: str,
        token: str | None) -> None:
    cloud.sim.push_signing = signing
    cloud.sim.push_token = token
    async with running(Daemon(cloud.config(mosquitto))) as daemon:
        await started(probe)
        cloud.sim.set_value(PLUG, 1, "EnergyManagement", "CurrentPower", 42.5)
        await probe.value("aqara/kitchen_plug/1/EnergyManagement/CurrentPower", "42.5")
        assert backend_of(daemon).pushes_rejected == 0
        assert cloud.sim.push_failed == 0


async def test_an_unsigned_push_with_a_token_the_bridge_never_held_is_refused(
        mosquitto: Mosquitto, cloud: Cloud, probe: MqttProbe) -> None:
    cloud.sim.push_token = "a-token-the-bridge-never-held"
    async with running(Daemon(cloud.config(mosquitto))) as daemon:
        await started(probe)
        cloud.sim.set_value(PLUG, 1, "EnergyManagement", "CurrentPower", 42.5)
        await cloud.sim.push_idle()
        assert cloud.sim.push_failed == 1
        assert backend_of(daemon).pushes_rejected == cloud.sim.push_retries + 1
        assert probe.last["aqara/kitchen_plug/1/EnergyManagement/CurrentPower"].text != "42.5"


async def test_forged_pushes_are_rejected(mosquitto: Mosquitto, cloud: Cloud,
                                          probe: MqttProbe) -> None:
    async with running(Daemon(cloud.config(mosquitto))) as daemon:
        await started(probe)
        body = json.dumps({"msgId": "x", "openId": cloud.sim.open_id, "msgType": "spec_report",
                           "time": str(now_ms()), "data": [
                               {"subjectId": PLUG, "codePath": "1.Output.OnOff", "value": "1",
                                "time": str(now_ms()), "statusCode": 0}]})
        stamp = str(now_ms())

        def signed(key: str, nonce: str) -> dict[str, str]:
            headers = {"token": "guessed", "time": stamp, "nonce": nonce, "appkey": "K.x"}
            digest = hashlib.md5(f"appkey=K.x&nonce={nonce}&time={stamp}&token=guessed{key}"
                                 .lower().encode(), usedforsecurity=False).hexdigest()
            return {**headers, "sign": digest}

        async with aiohttp.ClientSession() as http:
            async with http.post(cloud.callback_url, data=body,
                                 headers=signed("not-the-key", "n1")) as response:
                assert response.status == 401
            async with http.post(cloud.callback_url, data=body) as response:
                assert response.status == 401
            unkeyed = {**signed("", "n4")}
            async with http.post(cloud.callback_url, data=body, headers=unkeyed) as response:
                assert response.status == 401  # a digest without the AppKey proves nothing
            genuine = signed(cloud.sim.app_key, "n2")
            async with http.post(cloud.callback_url, data="not json", headers=genuine) as resp:
                assert resp.status == 400
            genuine = signed(cloud.sim.app_key, "n3")
            async with http.post(cloud.callback_url, data=body, headers=genuine) as response:
                assert response.status == 200
            async with http.post(cloud.callback_url, data=body, headers=genuine) as response:
                assert response.status == 401  # a replayed nonce
        await probe.value(PLUG_ONOFF, "true")  # only the genuine one
        assert backend_of(daemon).pushes_rejected == 4


async def test_garbage_from_the_cloud_is_survived(mosquitto: Mosquitto, cloud: Cloud,
                                                  probe: MqttProbe) -> None:
    async with running(Daemon(cloud.config(mosquitto))):
        await started(probe)
        cloud.sim.garbage = True
        start = len(probe.messages)
        await probe.publish(f"{PLUG_ONOFF}/set", "ON", response_topic="aqara/_replies/g")
        reply = (await probe.next_on("aqara/_replies/g", start)).json()
        assert reply["status"] == "error"
        assert "protocol error" in reply["error"]["message"]
        cloud.sim.garbage = False
        await probe.publish(f"{PLUG_ONOFF}/set", "ON")
        await probe.value(PLUG_ONOFF, "true", timeout=20)


async def test_get_rereads_from_the_cloud(mosquitto: Mosquitto, cloud: Cloud,
                                          probe: MqttProbe) -> None:
    async with running(Daemon(cloud.config(mosquitto))):
        await started(probe)
        topic = "aqara/kitchen_plug/1/EnergyManagement/CurrentVoltage"
        await probe.value(topic)
        cloud.sim.set_value(PLUG, 1, "EnergyManagement", "CurrentVoltage", 239.0, push=False)
        await probe.publish(f"{topic}/get", "")
        assert await probe.value(topic, "239") == "239"


async def test_cloud_unreachable_then_back(mosquitto: Mosquitto, probe: MqttProbe) -> None:
    sim = AqaraCloudSimulator(sample_account(), port=free_port())
    cloud = Cloud(sim)
    config = cloud.config(mosquitto)
    async with running(Daemon(config)):
        await probe.wait_for(lambda: (m := probe.last.get("aqara/bridge/info"))
                             and "unreachable" in m.json()["backends"][0]["detail"])
        await sim.start()
        try:
            await probe.wait_for(lambda: (m := probe.last.get("aqara/bridge/info"))
                                 and m.json()["backends"][0]["connected"], timeout=15)
            await probe.value(PLUG_ONOFF, "false")
        finally:
            await sim.stop()


async def test_stop_unsubscribes(mosquitto: Mosquitto, cloud: Cloud, probe: MqttProbe) -> None:
    async with running(Daemon(cloud.config(mosquitto))):
        await started(probe)
        assert cloud.sim.subscriptions
    assert cloud.sim.subscriptions == {}


async def test_tokens_are_renewed_before_they_expire(mosquitto: Mosquitto, cloud: Cloud,
                                                     probe: MqttProbe) -> None:
    """Once the lifetime is known (``expiresIn`` of a renewal) the pair is renewed in time."""
    cloud.sim.access_ttl = 2  # seconds, for every renewed token
    async with running(Daemon(cloud.config(mosquitto))) as daemon:
        await started(probe)
        cloud.sim.expire_tokens()
        await probe.publish(f"{PLUG_ONOFF}/set", "ON")  # 108, renewal, retry
        await probe.value(PLUG_ONOFF, "true")
        await cloud.sim.wait_requests("config.auth.refreshToken", 2)  # in time, unasked
        await cloud.sim.wait_requests("config.auth.refreshToken", 3)
        backend = backend_of(daemon)
        await probe.publish(f"{PLUG_ONOFF}/set", "OFF")
        await probe.value(PLUG_ONOFF, "false")
        assert backend.access_token in cloud.sim.valid_access_tokens
        refused = [c for c in cloud.sim.received if c["code"] not in (0, None)]
        assert [c["code"] for c in refused] == [2005]  # only the one expire_tokens() caused


@pytest.mark.parametrize(("kind", "code"), [("expired", 2005), ("expired", 108),
                                            ("unknown", 2004), ("unknown", 804),
                                            ("unknown", 109)])
async def test_every_token_code_renews_once(mosquitto: Mosquitto, cloud: Cloud, probe: MqttProbe,
                                            kind: str, code: int) -> None:
    """Each access-token code of Aqara's table: one renewal, the write goes through."""
    async with running(Daemon(cloud.config(mosquitto))) as daemon:
        await started(probe)
        if kind == "expired":
            cloud.sim.expired_token_code = code
            cloud.sim.expire_tokens()
        else:
            cloud.sim.unknown_token_code = code
            cloud.sim.forget_access_tokens()
        await probe.publish(f"{PLUG_ONOFF}/set", "ON")
        await probe.value(PLUG_ONOFF, "true")
        assert len(cloud.sim.intents("config.auth.refreshToken")) == 1
        assert [c["code"] for c in writes(cloud.sim)] == [code, 0]
        assert backend_of(daemon).renewals == 1


@pytest.mark.usefixtures("broker_check_ok")
@pytest.mark.parametrize("expired", [False, True])
async def test_dead_refresh_token_is_one_clear_state(mosquitto: Mosquitto, cloud: Cloud,
                                                     probe: MqttProbe, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     expired: bool) -> None:
    """A refused refresh token (2006 incorrect / 2007 expired): one state, no reconnect loop."""
    if expired:
        cloud.sim.refresh_ttl = -1
        cloud.access, cloud.refresh = cloud.sim.issue_tokens()
    else:
        cloud.refresh = "rt.not-a-refresh-token"
    token_file = tmp_path / "aqara-tokens.json"
    config = cloud.config(mosquitto, token_file=token_file)
    cloud.sim.expire_tokens()
    wanted = "authentication failed: get a new refresh token"
    async with running(Daemon(config)):
        info = await probe.wait_for(
            lambda: (m := probe.last.get("aqara/bridge/info"))
            and wanted in m.json()["backends"][0]["detail"] and m)
        backend = info.json()["backends"][0]
        assert backend["connected"] is False
        assert str(2007 if expired else 2006) in backend["detail"]
        calls = len(cloud.sim.received)
        await asyncio.sleep(3)  # reconnect_max_delay is 2 s: a reconnect would have come
        assert len(cloud.sim.received) == calls
        assert len(cloud.sim.intents("config.auth.refreshToken")) == 1
        assert [m.json()["backends"][0]["detail"] for m in probe.messages
                if m.topic == "aqara/bridge/info"].count(backend["detail"]) == 1
    assert await check(config) == 1
    out = capsys.readouterr().out
    assert f"backend cloud (aqara_cloud): FAILED: {wanted}" in out
    assert cloud.refresh not in out


async def test_gateway_offline_and_unbind_take_the_sub_devices_along(
        mosquitto: Mosquitto, cloud: Cloud, probe: MqttProbe) -> None:
    """``gateway_offline``/``gateway_unbind`` name the ``subDids``: they follow at once (the
    device list is re-read only every 10 minutes)."""
    hub = "lumi1.54ef44100000"
    async with running(Daemon(cloud.config(mosquitto))):
        await started(probe)
        await probe.value("aqara/kitchen_plug/availability", "online")
        cloud.sim.set_online(hub, False)
        await probe.value(f"aqara/{hub}/availability", "offline")
        await probe.value("aqara/kitchen_plug/availability", "offline")
        await probe.value(f"aqara/{THERMOSTAT}/availability", "offline")
        assert await probe.value(f"aqara/{MATTER_LAMP}/availability") == "online"  # no parent
        cloud.sim.set_online(hub, True)
        await probe.value("aqara/kitchen_plug/availability", "online")
        cloud.sim.remove_device(hub)
        await probe.value(PLUG_ONOFF, "")
        left = {"matt.2990fb3413ed87c9b7370000", MATTER_LAMP}
        await probe.wait_for(lambda: {d["id"] for d in probe.last["aqara/bridge/devices"].json()}
                             == left)


NEW_HUB = "lumi1.54ef44300000"
RELAYS = [relay_board(f"lumi.relay{i:02d}", f"Relay {i}", i) for i in range(1, 13)]
"""12 sub-devices of 12 new models, 102 traits: more than one call's worth of each limit."""
BOUND = frozenset({NEW_HUB, *(r.device_id for r in RELAYS)})


@pytest.fixture
async def ha_probe(mosquitto: Mosquitto) -> AsyncIterator[MqttProbe]:
    """A probe that also sees the Home Assistant discovery configs."""
    client = await MqttProbe(mosquitto.port, ["aqara/#", "homeassistant/#"]).start()
    yield client
    client.stop()


def onoff_topics(relay: SimDevice) -> list[str]:
    return [f"aqara/{relay.device_id}/{ep.endpoint_id}/Output/OnOff"
            for ep in relay.endpoints if ep.endpoint_id]


def ha_config(device_id: str) -> str:
    return f"homeassistant/device/{device_object_id(device_id, DiscoveryOptions())}/config"


async def bind_hub_with_relays(cloud: Cloud, probe: MqttProbe) -> None:
    """Bind :data:`NEW_HUB` with :data:`RELAYS` paired to it (one ``gateway_bind`` naming them
    in ``subDids``) and wait until every relay's traits and discovery config are published."""
    calls = len(cloud.sim.received)
    cloud.sim.add_device(hub_speaker(NEW_HUB, "Garage Hub", create_time=2), RELAYS)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5  # the device list is re-read only every device_refresh
    for relay in RELAYS:
        for topic in onoff_topics(relay):
            await probe.value(topic, "false", timeout=deadline - loop.time())
        await probe.value(ha_config(relay.device_id), timeout=deadline - loop.time())
    asked = cloud.sim.received[calls:]
    listings = [c["data"] for c in asked if c["intent"] == "query.device.info"]
    assert listings == [{"pageNum": 1, "pageSize": 50,
                         "dids": [NEW_HUB, *(r.device_id for r in RELAYS)]}]
    assert all(len(c["data"]["models"]) <= 5
               for c in asked if c["intent"] == "spec.query.qlinkmodel.config")
    assert all(len(c["data"]["traits"]) <= 10
               for c in asked if c["intent"] == "spec.config.trait.subscribe")
    assert all(len(c["data"]["traits"]) <= 50
               for c in asked if c["intent"] == "spec.query.trait")
    assert all(c["code"] == 0 for c in asked)


def listed(probe: MqttProbe) -> set[str]:
    """The device ids of the latest ``bridge/devices``."""
    return {d["id"] for d in probe.last["aqara/bridge/devices"].json()}


async def test_bound_gateway_brings_its_sub_devices_at_once(mosquitto: Mosquitto, cloud: Cloud,
                                                            ha_probe: MqttProbe) -> None:
    """``gateway_bind`` names the ``subDids``: they are described and published at once, not at
    the next re-read of the device list (an hour away here)."""
    daemon = Daemon(cloud.config(mosquitto))
    backend_of(daemon).device_refresh = 3600.0
    async with running(daemon):
        await started(ha_probe)
        await bind_hub_with_relays(cloud, ha_probe)
        await ha_probe.value(ha_config(NEW_HUB))
        await ha_probe.wait_for(lambda: listed(ha_probe) >= BOUND, timeout=5)
        cloud.sim.set_value(RELAYS[-1].device_id, 12, "Output", "OnOff", True)
        await ha_probe.value(onoff_topics(RELAYS[-1])[-1], "true")  # subscribed on arrival
        late = await MqttProbe(ha_probe.port, ["aqara/#", "homeassistant/#"]).start()
        try:
            await synced(late)
            for relay in RELAYS:
                for topic in [*onoff_topics(relay), ha_config(relay.device_id)]:
                    assert late.last[topic].retain, topic
        finally:
            late.stop()


async def test_unbound_gateway_takes_its_bound_sub_devices_along(
        mosquitto: Mosquitto, cloud: Cloud, ha_probe: MqttProbe) -> None:
    async with running(Daemon(cloud.config(mosquitto))):
        await started(ha_probe)
        await bind_hub_with_relays(cloud, ha_probe)
        cloud.sim.remove_device(NEW_HUB)
        for relay in RELAYS:
            for topic in onoff_topics(relay):
                await ha_probe.value(topic, "")
            await ha_probe.value(ha_config(relay.device_id), "")
        await ha_probe.wait_for(lambda: BOUND.isdisjoint(listed(ha_probe)))
        assert PLUG in listed(ha_probe)  # the first hub's devices stay


async def test_malformed_devices_are_skipped_and_logged_once(
        mosquitto: Mosquitto, cloud: Cloud, probe: MqttProbe, logs: LogWatch) -> None:
    cloud.sim.corrupt_device(THERMOSTAT, "no_device_id")  # cannot be named: left out
    cloud.sim.corrupt_device(MATTER_LAMP, "endpoint_id")  # spec unusable: no traits
    async with running(Daemon(cloud.config(mosquitto))) as daemon:
        await started(probe)
        devices = {d["id"]: d for d in probe.last["aqara/bridge/devices"].json()}
        assert len(devices) == len(sample_account()) - 1
        assert THERMOSTAT not in devices
        assert MATTER_LAMP in devices
        assert await probe.value(PLUG_ONOFF) == "false"
        assert backend_of(daemon).connected
        for _ in range(2):  # snapshots again: said once
            start = len(probe.messages)
            await probe.publish("aqara/bridge/request/resync", "{}")
            await probe.next_on("aqara/bridge/response/resync", start, timeout=20)
        assert logs.count(f"'device': '{MATTER_LAMP}'") == 1
        assert logs.count("devices without an id") == 1


# ---- call quota -------------------------------------------------------------------------------


async def hub_health(probe: MqttProbe, state: str) -> dict[str, Any]:
    """The bridge/info document once it reports the cloud hub in ``state``."""
    def check() -> dict[str, Any] | None:
        message = probe.last.get("aqara/bridge/info")
        info: dict[str, Any] | None = message.json() if message is not None else None
        return info if info and info["health"]["hubs"].get("cloud") == state else None

    result: dict[str, Any] = await probe.wait_for(check, timeout=15)
    return result


@pytest.mark.parametrize("style", ["envelope", "http"])
async def test_a_spent_quota_is_one_clear_state_and_no_call_follows(
        mosquitto: Mosquitto, cloud: Cloud, probe: MqttProbe, style: str) -> None:
    """A quota answer to a poll (INFERRED shapes: an envelope whose text says the month's quota
    is spent, or HTTP 429 with a Retry-After of a day): the detail says so and what to do,
    nothing reaches the cloud during the back-off, and a /get is answered with the reason."""
    daemon = Daemon(cloud.config(mosquitto, push=False, poll=0.2))
    backend_of(daemon).quota.backoff = 3600.0
    async with running(daemon):
        await started(probe)
        assert probe.last["aqara/bridge/info"].json()["backends"][0]["call_budget"][
            "by_kind"]["values"] >= 1
        cloud.sim.quota_style = style
        cloud.sim.quota_exhausted = True
        info = await hub_health(probe, "quota_exhausted")
        (backend,) = info["backends"]
        detail = backend["detail"]
        assert (backend["connected"], info["health"]["state"]) == (False, "degraded")
        if style == "envelope":
            assert detail.startswith("quota exhausted: The API calls of this month exceed the "
                                     "quota of your plan (code 2600); ")
            assert detail.endswith("the bridge makes no call for 60 min, then tries once")
        else:
            assert detail.startswith("quota exhausted: Too many requests: the monthly API call "
                                     "quota is used up (Retry-After: 86400 s) (code 429); ")
            assert detail.endswith("the bridge makes no call for 24 h, then tries once")
            assert backend["quota"]["retry_at"] >= time.time() + 86000
        assert "100,000 calls a month" in detail
        assert backend["quota"]["state"] == "closed"
        assert backend["call_budget"]["by_kind"]["poll"] >= 1
        refused = [c for c in cloud.sim.received if c["code"] in (2600, 429)]
        assert [c["intent"] for c in refused] == ["spec.query.trait"]  # the poll, once
        assert cloud.sim.rate_limited == 0
        await probe.value("aqara/kitchen_plug/availability", "offline")

        start = len(probe.messages)
        await probe.publish(f"{PLUG_ONOFF}/get", "", response_topic="aqara/_replies/q",
                            correlation=b"q1")
        reply = (await probe.next_on("aqara/_replies/q", start)).json()
        assert (reply["status"], reply["error"]["message"]) == ("error", detail)
        # polls every 0.2 s and a reconnect within 1 s would have called by now
        await asyncio.sleep(2.0)
        assert [c for c in cloud.sim.received if c["at"] > refused[0]["at"]] == []


async def test_after_the_back_off_one_try_then_calls_resume(mosquitto: Mosquitto, cloud: Cloud,
                                                            probe: MqttProbe) -> None:
    """A quota answer to a write: it fails with the reason and the session stops; after each
    back-off exactly one call tries; once the quota is back the bridge connects by itself."""
    daemon = Daemon(cloud.config(mosquitto))
    backend_of(daemon).quota.backoff = 1.0
    async with running(daemon):
        await started(probe)
        cloud.sim.quota_exhausted = True
        start = len(probe.messages)
        await probe.publish(f"{PLUG_ONOFF}/set", "ON")
        logged = await probe.wait_for(lambda: next(
            (m.json() for m in probe.messages[start:] if m.topic == "aqara/bridge/log"
             and "2600" in m.json()["message"]), None))
        assert "write failed" in logged["message"]
        assert "quota exhausted: The API calls of this month exceed" in logged["message"]
        await hub_health(probe, "quota_exhausted")

        def refused() -> list[dict[str, Any]]:
            return [c for c in cloud.sim.received if c["code"] == 2600]

        await eventually(lambda: len(refused()) >= 3)  # the write, then two tries
        cloud.sim.quota_exhausted = False
        await hub_health(probe, "connected")
        calls = refused()
        assert calls[0]["intent"] == "spec.write.trait"
        for before, after in itertools.pairwise(calls):
            assert after["at"] - before["at"] >= 0.95  # a whole back-off (1 s) between
            assert [c for c in cloud.sim.received if before["at"] < c["at"] < after["at"]] == []
        assert {c["intent"] for c in calls[1:]} == {"query.device.info"}  # a snapshot's first
        await probe.publish(f"{PLUG_ONOFF}/set", "ON")
        await probe.value(PLUG_ONOFF, "true")
        summary = backend_of(daemon).summary()  # what bridge/info and the web page show
        assert summary["quota"] == {"state": "open", "code": None, "retry_at": None}
        assert summary["call_budget"]["by_kind"]["command"] == 2  # the refused write counts too
