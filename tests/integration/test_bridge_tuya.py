"""The bridge end to end with the Tuya backend: simulator ⇄ daemon ⇄ real Mosquitto ⇄ a probe."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bridge.app import Daemon
from bridge.backends.base import BackendError, RequestInvalid
from bridge.backends.tuya.client import TuyaBackend
from bridge.backends.tuya.config import TuyaBackendConfig
from bridge.config import Config, parse_config
from bridge.simulators.tuya import TuyaSimulator
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
    SENSOR,
    SOCKET,
    THERMOSTAT,
    USER_UID,
    WALL_REMOTE,
    sample_world,
    share_plugs,
)
from bridge.simulators.tuya_home import event_devices as tuya_event_devices
from tests.integration.conftest import running, settled
from tests.mosquitto import Mosquitto
from tests.mqtt_probe import MqttProbe, eventually, synced

PLUG_TOPIC = "aqara/living_plug/1"
THERMO_TOPIC = "aqara/bedroom_thermostat/1"
ALL_DEVICES = {SOCKET, PLUG, CURTAIN, LIGHT, THERMOSTAT, SENSOR, GARDEN_SENSOR}


def tuya_config(mosquitto: Mosquitto, sim: TuyaSimulator, *, secret: str | None = None,
                client_id: str | None = None, backend_extra: str = "",
                names: bool = True) -> Config:
    devices = (f"devices:\n  {PLUG}: {{name: living_plug}}\n"
               f"  {THERMOSTAT}: {{name: bedroom_thermostat}}\n") if names else ""
    text = f"""
mqtt: {{url: "{mosquitto.url}", base_topic: aqara, keepalive: 10}}
backends:
  - type: tuya
    name: tuya
    url: "{sim.url}"
    push_url: "{sim.push_url}"
    client_id: "{client_id or sim.client_id}"
    secret: "{secret or sim.secret}"
    uid: "{USER_UID}"
    poll_interval: 0.3
    request_timeout: 5
    reconnect_max_delay: 0.5
{backend_extra}
{devices}
bridge: {{write_window_ms: 50}}
"""
    return parse_config(text, "tuya-test.yaml")



def backend_info(probe: MqttProbe) -> dict[str, Any]:
    info: dict[str, Any] = probe.last["aqara/bridge/info"].json()["backends"][0]
    return info


async def push_state(probe: MqttProbe, connected: bool) -> dict[str, Any]:
    """Wait until bridge/info says the push channel is (not) connected."""
    def check() -> dict[str, Any] | None:
        if "aqara/bridge/info" not in probe.last:
            return None
        info = backend_info(probe)
        return info if (info.get("push") == "connected") is connected else None

    result: dict[str, Any] = await probe.wait_for(check, timeout=15)
    return result


@pytest.fixture
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[TuyaSimulator]:
    """The simulated cloud; ``push_format`` from an indirect parameter (see BOTH_FORMATS)."""
    simulator = TuyaSimulator(push_format=getattr(request, "param", "legacy"))
    await simulator.start()
    yield simulator
    await simulator.stop()


BOTH_FORMATS = pytest.mark.parametrize("sim", ["legacy", "current"], indirect=True)
"""Run a test with the legacy messages (protocols 4, 20) and the IoT Core ones (1000, 1001)."""


@pytest.fixture
async def daemon(mosquitto: Mosquitto, sim: TuyaSimulator,
                 probe: MqttProbe) -> AsyncIterator[Daemon]:
    """The bridge with the Tuya backend, running, snapshot published, push connected."""
    async with running(Daemon(tuya_config(mosquitto, sim))) as bridge:
        await probe.value("aqara/bridge/state", "online")
        await probe.wait_for(lambda: probe.last.get("aqara/bridge/devices"))
        await push_state(probe, connected=True)
        await settled(bridge)
        yield bridge


def tuya(daemon: Daemon) -> TuyaBackend:
    backend = daemon.backends[0]
    assert isinstance(backend, TuyaBackend)
    return backend


def commands(sim: TuyaSimulator) -> list[Any]:
    return [r["body"]["commands"] for r in sim.requests_to("device.commands")]


# ---- state ----------------------------------------------------------------------------------


async def test_snapshot_is_published_retained(daemon: Daemon, sim: TuyaSimulator,
                                              probe: MqttProbe) -> None:
    devices = {d["id"]: d for d in probe.last["aqara/bridge/devices"].json()}
    assert set(devices) == ALL_DEVICES
    plug = devices[PLUG]
    assert (plug["friendly_name"], plug["backend"], plug["model"]) == (
        "living_plug", "tuya", "Metering Plug")
    assert (plug["home"], plug["home_id"], plug["room"], plug["room_id"]) == (
        "My Home", HOME_ID, "Living Room", 1408002)
    assert devices[SENSOR]["room"] is None
    assert devices[GARDEN_SENSOR]["home"] == "Hometown"
    functions = {f["code"]: f for f in plug["endpoints"][0]["functions"]}
    power = next(t for t in functions["power"]["traits"] if t["code"] == "cur_power")
    assert (power["type"], power["unit"], power["max"], power["step"], power["writable"]) == (
        "NUMBER", "W", 9999.9, 0.1, False)
    assert await probe.value(f"{PLUG_TOPIC}/switch/switch_1") == "false"
    assert await probe.value(f"{PLUG_TOPIC}/power/cur_power") == "12.3"
    assert await probe.value(f"{PLUG_TOPIC}/power/cur_voltage") == "230.1"
    assert await probe.value(f"{THERMO_TOPIC}/climate/temp_set") == "20.5"
    assert await probe.value(f"{THERMO_TOPIC}/sensor/temp_current") == "19.8"
    assert await probe.value(f"aqara/{CURTAIN}/1/cover/mode") == "morning"
    assert await probe.value(f"aqara/{SENSOR}/1/sensor/va_temperature") == "21.5"
    assert await probe.value(f"aqara/{SENSOR}/1/battery/battery_percentage") == "87"
    assert await probe.value(f"aqara/{LIGHT}/1/light/colour_data_v2") == (
        '{"h":0,"s":1000,"v":1000}')
    assert await probe.value("aqara/living_plug/availability") == "online"
    document = json.loads(await probe.value("aqara/living_plug"))
    assert document["1"]["power"]["cur_power"] == 12.3
    homes = probe.last["aqara/bridge/homes"].json()
    assert [(h["home_id"], h["backend"]) for h in homes] == [(HOME_ID, "tuya"),
                                                             (HOMETOWN_ID, "tuya")]
    kitchen = next(r for r in homes[0]["rooms"] if r["room_id"] == ROOM_KITCHEN)
    assert kitchen == {"room_id": ROOM_KITCHEN, "name": "Kitchen", "device_ids": [SOCKET]}
    assert SENSOR in homes[0]["device_ids"]
    info = backend_info(probe)
    assert (info["type"], info["connected"], info["push"], info["homes"], info["devices"]) == (
        "tuya", True, "connected", 2, 7)
    late = await MqttProbe(probe.port, ["aqara/#"]).start()
    try:
        await synced(late)
        assert late.last[f"{PLUG_TOPIC}/power/cur_power"].retain
        assert late.last["aqara/bridge/homes"].retain
    finally:
        late.stop()


@BOTH_FORMATS
async def test_physical_changes_arrive_through_the_push_channel(
    daemon: Daemon, sim: TuyaSimulator, probe: MqttProbe
) -> None:
    polls = tuya(daemon).polls
    sim.set_status(SENSOR, "va_temperature", 233)
    assert await probe.value(f"aqara/{SENSOR}/1/sensor/va_temperature", "23.3")
    sim.set_statuses(PLUG, {"cur_power": 1500, "cur_current": 6500})
    await probe.value(f"{PLUG_TOPIC}/power/cur_power", "150")
    await probe.value(f"{PLUG_TOPIC}/power/cur_current", "6500")
    assert tuya(daemon).polls == polls  # push is up: no polling
    assert sim.stats["push_acked"] >= 2


@BOTH_FORMATS
async def test_set_becomes_a_command_and_state_follows_the_report(
    daemon: Daemon, sim: TuyaSimulator, probe: MqttProbe
) -> None:
    await probe.publish(f"{THERMO_TOPIC}/climate/temp_set/set", "21.5")
    assert await probe.value(f"{THERMO_TOPIC}/climate/temp_set", "21.5")
    assert commands(sim) == [[{"code": "temp_set", "value": 215}]]  # unscaled
    assert sim.get_status(THERMOSTAT, "temp_set") == 215
    await probe.publish(f"{PLUG_TOPIC}/switch/switch_1/set", "ON")
    await probe.value(f"{PLUG_TOPIC}/switch/switch_1", "true")
    await probe.publish("aqara/bedroom_thermostat/set",
                        json.dumps({"1": {"climate": {"mode": "auto", "temp_set": 18},
                                          "switch": {"switch": False}}}))
    await probe.value(f"{THERMO_TOPIC}/climate/mode", "auto")
    await probe.value(f"{THERMO_TOPIC}/climate/temp_set", "18")
    await probe.value(f"{THERMO_TOPIC}/switch/switch", "false")
    assert commands(sim)[-1] == [{"code": "mode", "value": "auto"},
                                 {"code": "temp_set", "value": 180},
                                 {"code": "switch", "value": False}]
    await probe.publish(f"aqara/{LIGHT}/1/light/colour_data_v2/set",
                        '{"h": 120, "s": 500, "v": 900}')
    await probe.value(f"aqara/{LIGHT}/1/light/colour_data_v2", '{"h":120,"s":500,"v":900}')
    await probe.publish(f"aqara/{CURTAIN}/1/cover/percent_control/set", "35")
    await probe.value(f"aqara/{CURTAIN}/1/cover/percent_state", "35")


async def test_bad_writes_never_reach_the_cloud(daemon: Daemon, sim: TuyaSimulator,
                                                probe: MqttProbe) -> None:
    for topic, payload, reason in [
        (f"{THERMO_TOPIC}/climate/temp_set/set", "40", "maximum 35"),
        (f"{PLUG_TOPIC}/power/cur_power/set", "5", "read-only"),
        (f"aqara/{CURTAIN}/1/cover/control/set", "fly", "fly"),
    ]:
        start = len(probe.messages)
        await probe.publish(topic, payload)
        entry = (await probe.next_on("aqara/bridge/log", start)).json()
        assert reason in entry["message"], entry
    assert commands(sim) == []


async def test_cloud_refusal_is_reported(daemon: Daemon, sim: TuyaSimulator,
                                         probe: MqttProbe) -> None:
    sim.device(THERMOSTAT).dp("temp_set").values["max"] = 250  # type: ignore[union-attr]
    start = len(probe.messages)
    await probe.publish(f"{THERMO_TOPIC}/climate/temp_set/set", "30",
                        response_topic="aqara/_replies/t", correlation=b"c1")
    entry = (await probe.next_on("aqara/bridge/log", start)).json()
    assert entry["level"] == "error"
    assert "command or value not support" in entry["message"]
    assert "2008" in entry["message"]
    reply = (await probe.next_on("aqara/_replies/t", start)).json()
    assert reply["status"] == "error"
    assert await probe.value(f"{THERMO_TOPIC}/climate/temp_set") == "20.5"


async def test_get_rereads_from_the_cloud(daemon: Daemon, sim: TuyaSimulator,
                                          probe: MqttProbe) -> None:
    sim.device(SENSOR).status["va_humidity"] = 66  # changed without a report
    start = len(probe.messages)
    await probe.publish(f"aqara/{SENSOR}/1/sensor/va_humidity/get", "")
    assert (await probe.next_on(f"aqara/{SENSOR}/1/sensor/va_humidity", start)).text == "66"


def bridge_events(probe: MqttProbe, start: int) -> list[dict[str, Any]]:
    return [m.json() for m in probe.messages[start:] if m.topic == "aqara/bridge/event"]


@BOTH_FORMATS
async def test_availability_and_renames(daemon: Daemon, sim: TuyaSimulator,
                                        probe: MqttProbe) -> None:
    polls = tuya(daemon).polls
    sim.set_online(LIGHT, False)
    await probe.value(f"aqara/{LIGHT}/availability", "offline")
    start = len(probe.messages)
    await probe.publish(f"aqara/{LIGHT}/1/light/switch_led/set", "OFF")
    assert "offline" in (await probe.next_on("aqara/bridge/log", start)).json()["message"]
    sim.set_online(LIGHT, True)
    await probe.value(f"aqara/{LIGHT}/availability", "online")
    start = len(probe.messages)
    sim.rename_device(LIGHT, "Reading Lamp")

    def renamed() -> dict[str, Any] | None:
        return next((e for e in bridge_events(probe, start) if e["type"] == "device_renamed"),
                    None)

    event = await probe.wait_for(renamed)
    assert (event["device"]["id"], event["device"]["name"]) == (LIGHT, "Reading Lamp")
    assert tuya(daemon).polls == polls  # all of it by push


@BOTH_FORMATS
async def test_paired_and_removed_devices_come_and_go_by_push(
        daemon: Daemon, sim: TuyaSimulator, probe: MqttProbe) -> None:
    polls = tuya(daemon).polls
    start = len(probe.messages)
    sim.bind_device(next(d for d in tuya_event_devices() if d.id == WALL_REMOTE))
    await probe.wait_for(lambda: ("device_added", WALL_REMOTE) in {
        (e["type"], e["device"]["id"]) for e in bridge_events(probe, start)})
    await probe.wait_for(lambda: WALL_REMOTE in {
        d["id"] for d in probe.last["aqara/bridge/devices"].json()})
    sim.press(WALL_REMOTE, "switch2_value", "double_click")  # the new device's report
    press = await probe.wait_for(lambda: next(
        (m.json() for m in probe.messages[start:] if m.topic == "aqara/bridge/events"), None))
    assert (press["device_id"], press["button"], press["event_type"]) == (
        WALL_REMOTE, "2", "double")
    topic = f"aqara/{GARDEN_SENSOR}/1/sensor/va_temperature"
    assert await probe.value(topic) == "18.3"
    sim.remove_device(GARDEN_SENSOR)
    await probe.value(topic, "")  # the retained state is cleared
    await probe.wait_for(lambda: ("device_removed", GARDEN_SENSOR) in {
        (e["type"], e["device"]["id"]) for e in bridge_events(probe, start)})
    await probe.wait_for(lambda: GARDEN_SENSOR not in {
        d["id"] for d in probe.last["aqara/bridge/devices"].json()})
    assert tuya(daemon).polls == polls  # by push, not by a poll noticing the listing change


# ---- tokens and channels --------------------------------------------------------------------


async def test_token_expiry_mid_run(daemon: Daemon, sim: TuyaSimulator,
                                    probe: MqttProbe) -> None:
    sim.expire_tokens()
    await probe.publish(f"{PLUG_TOPIC}/switch/switch_1/set", "ON")
    await probe.value(f"{PLUG_TOPIC}/switch/switch_1", "true")
    assert (sim.stats["tokens_issued"], sim.stats["tokens_refreshed"]) == (2, 0)  # one renewal
    assert [r["code"] for r in sim.requests_to("device.commands")] == [1010, 0]
    sim.revoke_tokens()  # an unknown token: the same 1010, the same single renewal
    await probe.publish(f"{PLUG_TOPIC}/switch/switch_1/set", "OFF")
    await probe.value(f"{PLUG_TOPIC}/switch/switch_1", "false")
    assert sim.stats["tokens_issued"] == 3
    assert [r["code"] for r in sim.requests_to("token.refresh")] == []
    assert backend_info(probe)["connected"] is True


async def test_concurrent_calls_refused_together_share_one_renewal(
        daemon: Daemon, sim: TuyaSimulator, probe: MqttProbe) -> None:
    sim.revoke_tokens()
    await probe.publish(f"{PLUG_TOPIC}/switch/switch_1/set", "ON")
    await probe.publish(f"{THERMO_TOPIC}/climate/temp_set/set", "22")
    await probe.value(f"{PLUG_TOPIC}/switch/switch_1", "true")
    await probe.value(f"{THERMO_TOPIC}/climate/temp_set", "22")
    assert sim.stats["tokens_issued"] == 2  # the start's token and exactly one renewal
    codes = [r["code"] for r in sim.requests_to("device.commands")]
    assert codes.count(0) == 2  # each write once with the new token (once refused, if sent
    assert set(codes) <= {0, 1010}  # before the renewal)


async def test_token_is_refreshed_before_it_expires(mosquitto: Mosquitto,
                                                    probe: MqttProbe) -> None:
    simulator = TuyaSimulator(token_lifetime=2)
    await simulator.start()
    try:
        async with running(Daemon(tuya_config(mosquitto, simulator))):
            await push_state(probe, connected=True)
            await eventually(lambda: simulator.stats["tokens_refreshed"] >= 2)
            assert not [r for r in simulator.received if r["code"] in (1010, 1011)]
            await probe.publish(f"{PLUG_TOPIC}/switch/switch_1/set", "ON")
            await probe.value(f"{PLUG_TOPIC}/switch/switch_1", "true")
    finally:
        await simulator.stop()


async def test_push_drop_falls_back_to_polling_then_resumes(
    daemon: Daemon, sim: TuyaSimulator, probe: MqttProbe
) -> None:
    backend = tuya(daemon)
    sim.push_enabled = False
    await sim.drop_push_connections()
    info = await push_state(probe, connected=False)
    assert "503" in info["push"] or "lost" in info["push"] or "closed" in info["push"]
    assert info["connected"] is True
    await probe.value("aqara/living_plug/availability", "online")
    # changes still arrive: by polling
    sim.set_status(PLUG, "cur_power", 777)
    await probe.value(f"{PLUG_TOPIC}/power/cur_power", "77.7")
    assert backend.polls >= 1
    sim.set_online(LIGHT, False)
    await probe.value(f"aqara/{LIGHT}/availability", "offline")
    # a write is read back at once, without waiting for a push
    await probe.publish(f"{PLUG_TOPIC}/switch/switch_1/set", "ON")
    await probe.value(f"{PLUG_TOPIC}/switch/switch_1", "true")
    # the push channel comes back; polling stops
    sim.push_enabled = True
    await push_state(probe, connected=True)
    await eventually(lambda: sim.pending_messages == 0)  # the backlog was acked
    polls = backend.polls
    acked = sim.stats["push_acked"]
    sim.set_status(PLUG, "cur_power", 888)
    await probe.value(f"{PLUG_TOPIC}/power/cur_power", "88.8")
    assert sim.stats["push_acked"] > acked
    assert backend.polls == polls
    sim.set_online(LIGHT, True)
    await probe.value(f"aqara/{LIGHT}/availability", "online")


async def test_old_redeliveries_never_roll_values_back(daemon: Daemon, sim: TuyaSimulator,
                                                       probe: MqttProbe) -> None:
    sim.set_status(SENSOR, "va_humidity", 50)
    await probe.value(f"aqara/{SENSOR}/1/sensor/va_humidity", "50")
    stale = sim.now_ms() - 60_000
    sim.publish_message(4, {"dataId": "x", "devId": SENSOR, "productKey": "p",
                            "status": [{"code": "va_humidity", "value": 10, "t": stale}]})
    sim.set_status(SENSOR, "va_temperature", 250)
    await probe.value(f"aqara/{SENSOR}/1/sensor/va_temperature", "25")
    assert probe.last[f"aqara/{SENSOR}/1/sensor/va_humidity"].text == "50"


async def test_wrong_secret_is_reported_without_leaking(mosquitto: Mosquitto,
                                                        sim: TuyaSimulator,
                                                        probe: MqttProbe) -> None:
    wrong = "W" * 32
    async with running(Daemon(tuya_config(mosquitto, sim, secret=wrong))):
        info = await probe.wait_for(
            lambda: (m := probe.last.get("aqara/bridge/info"))
            and "authentication failed" in m.json()["backends"][0]["detail"] and m)
        detail = info.json()["backends"][0]["detail"]
        assert "1004" in detail
        assert "check client_id and secret" in detail
        assert info.json()["backends"][0]["connected"] is False
    for message in probe.messages:
        assert wrong.encode() not in message.payload
        assert sim.secret.encode() not in message.payload


async def test_unknown_client_id_is_reported(mosquitto: Mosquitto, sim: TuyaSimulator,
                                             probe: MqttProbe) -> None:
    async with running(Daemon(tuya_config(mosquitto, sim, client_id="not-our-project"))):
        info = await probe.wait_for(
            lambda: (m := probe.last.get("aqara/bridge/info"))
            and "1005" in m.json()["backends"][0]["detail"] and m)
        assert "authentication failed" in info.json()["backends"][0]["detail"]


async def test_secrets_and_tokens_never_reach_mqtt(daemon: Daemon, sim: TuyaSimulator,
                                                   probe: MqttProbe) -> None:
    await probe.publish(f"{PLUG_TOPIC}/switch/switch_1/set", "ON")
    await probe.value(f"{PLUG_TOPIC}/switch/switch_1", "true")
    await synced(probe)
    tokens = [t.encode() for t in sim.issued_tokens]
    assert tokens
    for message in probe.messages:
        assert sim.secret.encode() not in message.payload, message.topic
        for token in tokens:
            assert token not in message.payload, message.topic


async def test_probe_counts_devices_and_names_bad_credentials(sim: TuyaSimulator) -> None:
    def backend(secret: str) -> TuyaBackend:
        spec = TuyaBackendConfig(type="tuya", url=sim.url, push_url=sim.push_url,
                                 client_id=sim.client_id, secret=secret,  # type: ignore[arg-type]
                                 uid=USER_UID)
        return TuyaBackend.from_config(spec)

    assert await backend(sim.secret).probe() == 7
    with pytest.raises(BackendError, match=r"authentication failed.*1004"):
        await backend("Z" * 32).probe()


async def test_polling_only(mosquitto: Mosquitto, sim: TuyaSimulator,
                            probe: MqttProbe) -> None:
    config = tuya_config(mosquitto, sim, backend_extra="    push: false")
    async with running(Daemon(config)) as bridge:
        await probe.value(f"{PLUG_TOPIC}/switch/switch_1", "false")
        assert backend_info(probe)["push"] == "disabled"
        sim.set_status(PLUG, "cur_power", 5)
        await probe.value(f"{PLUG_TOPIC}/power/cur_power", "0.5")
        assert tuya(bridge).polls >= 1
    assert sim.stats["push_connections"] == 0


async def test_rooms_in_topics(mosquitto: Mosquitto, sim: TuyaSimulator,
                               probe: MqttProbe) -> None:
    config = tuya_config(mosquitto, sim, backend_extra="    rooms_in_topics: true",
                         names=False)
    async with running(Daemon(config)):
        assert await probe.value("aqara/kitchen_xxx_socket/1/switch/switch") == "true"
        assert await probe.value("aqara/living_room_living_room_plug/1/power/cur_power") == (
            "12.3")
        assert await probe.value("aqara/my_home_hallway_sensor/1/sensor/va_humidity") == "48"
        assert await probe.value("aqara/garden_garden_sensor/1/sensor/va_temperature") == (
            "18.3")
        await probe.wait_for(lambda: (m := probe.last.get("aqara/bridge/devices")) and {
            d["id"]: d["friendly_name"] for d in m.json()}.get(SOCKET) == "kitchen_xxx_socket")
        await probe.publish("aqara/kitchen_xxx_socket/1/switch/switch/set", "OFF")
        await probe.value("aqara/kitchen_xxx_socket/1/switch/switch", "false")


# ---- management -----------------------------------------------------------------------------


async def refused(probe: MqttProbe, command: str, args: dict[str, Any], code: int) -> None:
    """The cloud refuses the request, and its code comes back over MQTT request/response."""
    answer = await mqtt_request(probe, command, args)
    assert answer["status"] == "error", answer
    assert answer["error"]["code"] == code, answer


async def test_invalid_requests_make_no_call(daemon: Daemon, sim: TuyaSimulator) -> None:
    before = len(sim.received)
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("tuya/home/add", {"home": {}}, "home.name"),
        ("tuya/home/edit", {"home_id": "1", "name": "x"}, "home_id"),
        ("tuya/room/devices/add", {"home_id": 1, "room_id": 2, "device_ids": [3]},
         "device_ids[0]"),
        ("tuya/member/authority", {"home_id": 1, "uid": "u"}, "admin"),
        ("tuya/nope", {}, "command"),
    ]
    for command, args, field in cases:
        with pytest.raises(RequestInvalid) as caught:
            await tuya(daemon).request(command, args)
        assert caught.value.field == field
    assert len(sim.received) == before


async def test_home_commands(daemon: Daemon, sim: TuyaSimulator, probe: MqttProbe) -> None:
    backend = tuya(daemon)
    home_id = await backend.request("tuya/home/add", {
        "home": {"name": "Flat", "geo_name": "Hangzhou", "lon": 120.1, "lat": 30.2},
        "rooms": ["Hall"]})
    assert isinstance(home_id, int)
    homes = await probe.wait_for(
        lambda: [h for h in probe.last["aqara/bridge/homes"].json() if h["home_id"] == home_id])
    assert [r["name"] for r in homes[0]["rooms"]] == ["Hall"]
    assert await backend.request("tuya/home/edit", {"home_id": home_id, "name": "Loft"}) is True
    assert await backend.request("tuya/home/get", {"home_id": home_id}) == {
        "home_id": home_id, "name": "Loft", "geo_name": "Hangzhou", "lon": 120.1, "lat": 30.2}
    await probe.wait_for(lambda: any(h["name"] == "Loft"
                                     for h in probe.last["aqara/bridge/homes"].json()))
    devices = await backend.request("tuya/home/devices", {"home_id": HOME_ID})
    assert {d["id"] for d in devices} == ALL_DEVICES - {GARDEN_SENSOR}
    assert await backend.request("tuya/home/delete", {"home_id": home_id}) is True
    await probe.wait_for(lambda: all(h["home_id"] != home_id
                                     for h in probe.last["aqara/bridge/homes"].json()))
    await refused(probe, "tuya/home/add", {"uid": "ay-nobody", "home": {"name": "x"}}, 1000)
    await refused(probe, "tuya/home/edit", {"home_id": 999, "name": "x"}, 1000)
    await refused(probe, "tuya/home/get", {"home_id": 999}, 1000)
    await refused(probe, "tuya/home/devices", {"home_id": 999}, 1000)
    await refused(probe, "tuya/home/delete", {"home_id": 999}, 1000)


async def test_renaming_a_home_updates_its_devices(daemon: Daemon, probe: MqttProbe) -> None:
    start = len(probe.messages)
    await tuya(daemon).request("tuya/home/edit", {"home_id": HOMETOWN_ID, "name": "Cottage"})
    event = (await probe.next_on("aqara/bridge/event", start)).json()
    assert (event["type"], event["device"]["id"]) == ("device_updated", GARDEN_SENSOR)
    await probe.wait_for(lambda: {d["id"]: d["home"] for d in
                                  probe.last["aqara/bridge/devices"].json()}
                         [GARDEN_SENSOR] == "Cottage")


async def test_deleting_a_home_removes_its_devices(daemon: Daemon, probe: MqttProbe) -> None:
    topic = f"aqara/{GARDEN_SENSOR}/1/sensor/va_temperature"
    assert await probe.value(topic) == "18.3"
    start = len(probe.messages)
    assert await tuya(daemon).request("tuya/home/delete", {"home_id": HOMETOWN_ID}) is True
    await probe.value(topic, "")
    event = (await probe.next_on("aqara/bridge/event", start)).json()
    assert (event["type"], event["device"]["id"]) == ("device_removed", GARDEN_SENSOR)
    await probe.wait_for(lambda: [h["home_id"] for h in
                                  probe.last["aqara/bridge/homes"].json()] == [HOME_ID])


async def test_room_commands(daemon: Daemon, sim: TuyaSimulator, probe: MqttProbe) -> None:
    backend = tuya(daemon)
    room_id = await backend.request("tuya/room/add", {"home_id": HOME_ID, "name": "Office"})
    listing = await backend.request("tuya/room/list", {"home_id": HOME_ID})
    assert {"room_id": room_id, "name": "Office"} in listing["rooms"]
    assert await backend.request("tuya/room/edit", {"home_id": HOME_ID, "room_id": room_id,
                                                    "name": "Study"}) is True
    # moving devices re-announces them with their new room
    start = len(probe.messages)
    assert await backend.request("tuya/room/devices/add", {
        "home_id": HOME_ID, "room_id": room_id, "device_ids": [SOCKET, SENSOR]}) is True

    def updates() -> set[tuple[str, str]]:
        events = [m.json() for m in probe.messages[start:] if m.topic == "aqara/bridge/event"]
        return {(e["type"], e["device"]["id"]) for e in events}

    await probe.wait_for(lambda: len(updates()) >= 2)
    assert updates() == {("device_updated", SOCKET), ("device_updated", SENSOR)}

    def placed() -> bool:
        devices = {d["id"]: d for d in probe.last["aqara/bridge/devices"].json()}
        homes = probe.last["aqara/bridge/homes"].json()
        study = next(r for r in homes[0]["rooms"] if r["room_id"] == room_id)
        return (devices[SOCKET]["room"], devices[SOCKET]["room_id"],
                set(study["device_ids"])) == ("Study", room_id, {SOCKET, SENSOR})

    await probe.wait_for(placed)
    in_room = await backend.request("tuya/room/devices", {"home_id": HOME_ID,
                                                          "room_id": room_id})
    assert {d["id"] for d in in_room} == {SOCKET, SENSOR}
    assert await backend.request("tuya/room/devices/edit", {
        "home_id": HOME_ID, "room_id": room_id, "device_ids": [LIGHT]}) is True
    assert await backend.request("tuya/room/devices/remove", {
        "home_id": HOME_ID, "room_id": room_id, "device_ids": [LIGHT]}) is True
    removal = sim.requests_to("home.roomDeleteDevices")[-1]
    assert (removal["query"], removal["body"]) == ({}, {"device_ids": [LIGHT]})  # the DOC form
    assert sim.device(LIGHT).room_id is None
    await probe.wait_for(lambda: {d["id"]: d for d in probe.last["aqara/bridge/devices"].json()}
                         [LIGHT]["room"] is None)
    assert await backend.request("tuya/room/delete", {"home_id": HOME_ID,
                                                      "room_id": room_id}) is True
    await probe.wait_for(lambda: all(r["room_id"] != room_id for r in
                                     probe.last["aqara/bridge/homes"].json()[0]["rooms"]))
    # the cloud's refusals come through with its code
    await refused(probe, "tuya/room/add", {"home_id": 5, "name": "x"}, 1000)
    await refused(probe, "tuya/room/edit", {"home_id": HOME_ID, "room_id": 7, "name": "x"}, 1000)
    await refused(probe, "tuya/room/delete", {"home_id": HOME_ID, "room_id": 7}, 1000)
    await refused(probe, "tuya/room/list", {"home_id": 5}, 1000)
    await refused(probe, "tuya/room/devices", {"home_id": HOME_ID, "room_id": 7}, 1000)
    await refused(probe, "tuya/room/devices/add",
                  {"home_id": HOME_ID, "room_id": ROOM_BEDROOM, "device_ids": ["nope"]}, 1000)
    await refused(probe, "tuya/room/devices/edit",
                  {"home_id": HOME_ID, "room_id": ROOM_BEDROOM,
                   "device_ids": [GARDEN_SENSOR]}, 1109)
    await refused(probe, "tuya/room/devices/remove",
                  {"home_id": HOME_ID, "room_id": ROOM_KITCHEN, "device_ids": [THERMOSTAT]},
                  1109)


async def test_member_commands(daemon: Daemon, probe: MqttProbe) -> None:
    backend = tuya(daemon)
    members = await backend.request("tuya/member/list", {"home_id": HOME_ID})
    assert {m["uid"]: m["admin"] for m in members} == {USER_UID: True, MEMBER_UID: False}
    assert await backend.request("tuya/member/add", {
        "home_id": HOME_ID, "country_code": OTHER_ACCOUNT[0],
        "member_account": OTHER_ACCOUNT[1], "name": "Li"}) is True
    assert await backend.request("tuya/member/authority", {
        "home_id": HOME_ID, "uid": OTHER_UID, "admin": True}) is True
    members = await backend.request("tuya/member/list", {"home_id": HOME_ID})
    assert {m["uid"]: m["admin"] for m in members}[OTHER_UID] is True
    homes = await backend.request("tuya/member/homes", {"uid": OTHER_UID})
    assert [h["home_id"] for h in homes] == [HOME_ID]
    mine = await backend.request("tuya/member/homes", {})
    assert {h["home_id"] for h in mine} == {HOME_ID, HOMETOWN_ID}
    assert await backend.request("tuya/member/delete", {"home_id": HOME_ID,
                                                        "uid": OTHER_UID}) is True
    await refused(probe, "tuya/member/list", {"home_id": 5}, 1000)
    await refused(probe, "tuya/member/add", {"home_id": HOME_ID, "country_code": "1",
                                              "member_account": "nobody"}, 1000)
    await refused(probe, "tuya/member/authority",
                  {"home_id": HOME_ID, "uid": USER_UID, "admin": False}, 1106)
    await refused(probe, "tuya/member/delete", {"home_id": HOME_ID, "uid": OTHER_UID}, 1000)
    await refused(probe, "tuya/member/homes", {"uid": "ay-nobody"}, 1000)


_ids = itertools.count(1)


async def mqtt_request(probe: MqttProbe, command: str, args: dict[str, Any]) -> dict[str, Any]:
    transaction = f"tuya-{next(_ids)}"
    start = len(probe.messages)
    await probe.publish(f"aqara/bridge/request/{command}",
                        json.dumps({**args, "transaction": transaction}))
    topic = f"aqara/bridge/response/{command}"

    def answered() -> dict[str, Any] | None:
        for message in probe.messages[start:]:
            if message.topic == topic and message.json().get("transaction") == transaction:
                body: dict[str, Any] = message.json()
                return body
        return None

    result: dict[str, Any] = await probe.wait_for(answered, timeout=15)
    return result


async def test_management_over_mqtt(daemon: Daemon, sim: TuyaSimulator,
                                    probe: MqttProbe) -> None:
    answer = await mqtt_request(probe, "tuya/room/add", {"home_id": HOME_ID, "name": "Attic"})
    assert answer["status"] == "ok", answer
    room_id = answer["data"]
    assert any(r.name == "Attic" and r.room_id == room_id
               for r in sim.world.homes[HOME_ID].rooms)
    await probe.wait_for(lambda: any(r["room_id"] == room_id for r in
                                     probe.last["aqara/bridge/homes"].json()[0]["rooms"]))
    answer = await mqtt_request(probe, "tuya/room/list", {"home_id": HOME_ID})
    assert "Attic" in [r["name"] for r in answer["data"]["rooms"]]
    before = len(sim.received)
    answer = await mqtt_request(probe, "tuya/room/add", {"home_id": HOME_ID})
    assert answer["status"] == "error"
    assert answer["error"]["code"] == "invalid_request"
    assert "name" in answer["error"]["message"]
    assert len(sim.received) == before
    answer = await mqtt_request(probe, "tuya/member/delete", {"home_id": HOME_ID,
                                                              "uid": USER_UID})
    assert answer["status"] == "error"
    assert answer["error"]["code"] == 1106
    assert "permission deny" in answer["error"]["message"]


async def test_aes_gcm_messages_are_decrypted(mosquitto: Mosquitto, probe: MqttProbe) -> None:
    """Newer projects' messages: AES-GCM, announced by ``"em": "aes_gcm"`` in the properties."""
    simulator = TuyaSimulator()
    simulator.push_encryption = "aes_gcm"
    await simulator.start()
    try:
        async with running(Daemon(tuya_config(mosquitto, simulator))) as bridge:
            await push_state(probe, connected=True)
            simulator.set_status(PLUG, "switch_1", True)
            await probe.value(f"{PLUG_TOPIC}/switch/switch_1", "true")
            backend = tuya(bridge)
            assert (backend.push_messages, backend.garbage_received) == (1, 0)
    finally:
        await simulator.stop()


@pytest.mark.parametrize("scheme", ["last_id", "page_no"])
async def test_user_devices_are_read_page_by_page(mosquitto: Mosquitto, probe: MqttProbe,
                                                  scheme: str) -> None:
    simulator = TuyaSimulator(page_scheme=scheme)
    simulator.page_size = 2  # the cloud caps each page below the 100 asked for
    await simulator.start()
    try:
        async with running(Daemon(tuya_config(mosquitto, simulator))):
            await probe.wait_for(lambda: (m := probe.last.get("aqara/bridge/devices"))
                                 and {d["id"] for d in m.json()} == ALL_DEVICES)
        pages = [r["query"] for r in simulator.requests_to("user.devices")]
        assert pages[0] == {"page_size": "100"}
        assert "last_id" in pages[1]
        if scheme == "last_id":  # 7 devices, 2 per page: the 4th page is short
            assert all("last_id" in q for q in pages[1:4])
        else:  # the first page came back: last_id means nothing to this cloud
            assert [q.get("page_no") for q in pages[2:5]] == ["2", "3", "4"]
        assert all(r["code"] == 0 for r in simulator.requests_to("user.devices"))
    finally:
        await simulator.stop()


@pytest.mark.parametrize("scheme", ["last_id", "page_no"])
async def test_every_device_of_a_long_listing_reaches_mqtt(mosquitto: Mosquitto,
                                                           probe: MqttProbe,
                                                           scheme: str) -> None:
    world = sample_world()
    share_plugs(world, 141)  # in none of the user's homes: only the user's listing has them
    everything = set(world.devices)
    assert len(everything) == 148  # more than one page of 100
    simulator = TuyaSimulator(world=world, page_scheme=scheme)
    await simulator.start()
    try:
        async with running(Daemon(tuya_config(mosquitto, simulator))):
            await probe.wait_for(lambda: (m := probe.last.get("aqara/bridge/devices"))
                                 and {d["id"] for d in m.json()} == everything, timeout=30)
            assert await probe.value("aqara/vdevosyn000000000141/1/power/cur_power") == "14.1"
            # bridge/info may come after the device list: its own message, awaited
            await probe.wait_for(lambda: "aqara/bridge/info" in probe.last
                                 and backend_info(probe)["devices"] == 148)
    finally:
        await simulator.stop()


async def test_a_storm_of_reports_from_an_unknown_device_costs_a_few_resyncs(
        daemon: Daemon, sim: TuyaSimulator, probe: MqttProbe) -> None:
    before = len(sim.requests_to("home.memberHomeList"))
    for n in range(300):
        sim.publish_message(4, {"devId": "not-bound-yet", "dataId": f"d{n}",
                                "status": [{"code": "switch_1", "value": True, "t": n}]})
    await eventually(lambda: sim.pending_messages == 0, timeout=30)
    await eventually(lambda: not tuya(daemon)._resyncing, timeout=30)
    resyncs = len(sim.requests_to("home.memberHomeList")) - before
    assert 1 <= resyncs <= 3, resyncs


# ---- quota and expiry -----------------------------------------------------------------------


async def hub_health(probe: MqttProbe, state: str) -> dict[str, Any]:
    """The bridge/info document once it reports the Tuya hub in ``state``."""
    def check() -> dict[str, Any] | None:
        message = probe.last.get("aqara/bridge/info")
        info: dict[str, Any] | None = message.json() if message is not None else None
        return info if info and info["health"]["hubs"].get("tuya") == state else None

    result: dict[str, Any] = await probe.wait_for(check, timeout=15)
    return result


async def test_a_spent_quota_is_one_clear_state_and_no_call_follows(
        mosquitto: Mosquitto, sim: TuyaSimulator, probe: MqttProbe) -> None:
    """28841004 (Trial Edition quota used up) to a poll: the detail says so and what to do, and
    during the back-off nothing reaches the cloud; a /get and a management command are answered
    with the reason at once."""
    bridge = Daemon(tuya_config(mosquitto, sim, backend_extra="    push: false"))
    tuya(bridge).quota.backoff = 3600.0
    async with running(bridge):
        await probe.value(f"{PLUG_TOPIC}/switch/switch_1", "false")
        assert backend_info(probe)["call_budget"]["by_kind"]["device_list"] >= 1
        sim.quota_code = 28841004
        info = await hub_health(probe, "quota_exhausted")
        backend = info["backends"][0]
        detail = backend["detail"]
        assert detail.startswith("quota exhausted: No permissions. Your quota of Trial Edition is "
                                 "used up. (code 28841004): ")
        assert "buy a resource pack at iot.tuya.com" in detail
        assert detail.endswith("the bridge makes no call for 60 min, then tries once")
        assert (backend["connected"], info["health"]["state"]) == (False, "degraded")
        assert (backend["quota"]["state"], backend["quota"]["code"]) == ("closed", 28841004)
        assert backend["call_budget"]["by_kind"]["poll"] >= 1
        refused = [r for r in sim.received if r["code"] == 28841004]
        assert [r["action"] for r in refused] == ["user.devices"]  # the poll, once
        await probe.value("aqara/living_plug/availability", "offline")

        start = len(probe.messages)
        await probe.publish(f"aqara/{SENSOR}/1/sensor/va_humidity/get", "",
                            response_topic="aqara/_replies/q", correlation=b"q1")
        reply = (await probe.next_on("aqara/_replies/q", start)).json()
        assert (reply["status"], reply["error"]["message"]) == ("error", detail)
        answer = await mqtt_request(probe, "tuya.room.add", {"home_id": HOME_ID,
                                                             "name": "Attic"})
        assert (answer["status"], answer["error"]["code"]) == ("error", 28841004)
        assert answer["error"]["message"] == detail
        # polls every 0.3 s and reconnects within 0.5 s would have called by now
        await asyncio.sleep(2.0)
        assert [r for r in sim.received if r["at"] > refused[0]["at"]] == []
        assert sim.stats["push_connections"] == 0
        assert all(r.name != "Attic" for r in sim.world.homes[HOME_ID].rooms)


async def test_after_the_back_off_one_try_then_calls_resume(
        daemon: Daemon, sim: TuyaSimulator, probe: MqttProbe) -> None:
    """28841002 (the trial expired) to a write: the write fails with the reason, the session
    and the message service stop; after each back-off exactly one call tries; once the plan is
    renewed the bridge connects by itself."""
    tuya(daemon).quota.backoff = 1.0
    sim.quota_code = 28841002
    start = len(probe.messages)
    await probe.publish(f"{PLUG_TOPIC}/switch/switch_1/set", "ON")
    logged = await probe.wait_for(lambda: next(
        (m.json() for m in probe.messages[start:] if m.topic == "aqara/bridge/log"
         and "28841002" in m.json()["message"]), None))
    assert "write failed" in logged["message"]
    assert "service expired: No permissions. Your subscription to cloud development plan has " \
           "expired. (code 28841002)" in logged["message"]
    info = await hub_health(probe, "quota_exhausted")
    assert "renew the trial" in info["backends"][0]["detail"]
    await eventually(lambda: sim.push_connections == 0)  # the message service is left too

    def refused() -> list[dict[str, Any]]:
        return [r for r in sim.received if r["code"] == 28841002]

    await eventually(lambda: len(refused()) >= 3)  # the write, then two tries
    sim.quota_code = None
    await hub_health(probe, "connected")
    await push_state(probe, connected=True)
    calls = refused()
    assert calls[0]["action"] == "device.commands"
    for before, after in itertools.pairwise(calls):
        assert after["at"] - before["at"] >= 0.95  # a whole back-off (1 s) between
        assert [r for r in sim.received if before["at"] < r["at"] < after["at"]] == []
    assert {r["action"] for r in calls[1:]} == {"home.memberHomeList"}  # a session's 1st call
    await probe.publish(f"{PLUG_TOPIC}/switch/switch_1/set", "ON")
    await probe.value(f"{PLUG_TOPIC}/switch/switch_1", "true")
    assert backend_info(probe)["quota"] == {"state": "open", "code": None, "retry_at": None}


async def test_an_api_the_project_lacks_is_a_permission_problem(
        mosquitto: Mosquitto, sim: TuyaSimulator, probe: MqttProbe) -> None:
    """28841101 (this API is not subscribed) is no quota: permission denied, with what to do."""
    sim.quota_code = 28841101
    async with running(Daemon(tuya_config(mosquitto, sim))):
        info = await hub_health(probe, "auth_failed")
        detail = info["backends"][0]["detail"]
        assert detail.startswith("permission denied (code 28841101): No permissions. This API "
                                 "is not subscribed.")
        assert "Service API" in detail
        assert info["backends"][0]["quota"]["state"] == "open"
