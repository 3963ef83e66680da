"""The bridge end to end: Studio simulator ⇄ daemon ⇄ real Mosquitto ⇄ a probe client."""

from __future__ import annotations

import json
from typing import Any

from bridge.app import Daemon
from bridge.simulators.sample_home import sample_home, smart_plug
from bridge.simulators.studio import StudioSimulator
from tests.integration.conftest import (
    LIGHT,
    OFFLINE,
    PLUG,
    SWITCH,
    TOKEN,
    bridge_config,
    running,
)
from tests.mosquitto import Mosquitto
from tests.mqtt_probe import MqttProbe, synced

THERMOSTAT = "lumi1.54ef448cc210"
PLUG_ONOFF = "aqara/kitchen_plug/1/Output/OnOff"


def executes(hub: StudioSimulator) -> list[dict[str, Any]]:
    """Every ExecuteTraitRequest the hub received."""
    return [m for m in hub.received if m.get("type") == "ExecuteTraitRequest"]


async def test_snapshot_is_published_retained(daemon: Daemon, probe: MqttProbe) -> None:
    devices = probe.last["aqara/bridge/devices"].json()
    assert len(devices) == len(sample_home())
    plug = next(d for d in devices if d["id"] == PLUG)
    assert plug["friendly_name"] == "kitchen_plug"
    assert plug["backend"] == "home"
    assert await probe.value(PLUG_ONOFF) == "false"
    assert await probe.value(f"aqara/{SWITCH}/2/Output/OnOff") in ("true", "false")
    assert await probe.value("aqara/kitchen_plug/availability") == "online"
    assert await probe.value(f"aqara/{OFFLINE}/availability") == "offline"
    document = json.loads(await probe.value("aqara/kitchen_plug"))
    assert document["1"]["Output"]["OnOff"] is False
    info = probe.last["aqara/bridge/info"].json()
    assert info["backends"][0]["connected"] is True
    # a late subscriber gets everything retained
    late = await MqttProbe(probe.port, ["aqara/#"]).start()
    try:
        await synced(late)
        assert late.last[PLUG_ONOFF].retain
        assert late.last[PLUG_ONOFF].text == "false"
        assert late.last["aqara/bridge/state"].text == "online"
    finally:
        late.stop()


async def test_names_are_sanitised_in_topics(daemon: Daemon, probe: MqttProbe) -> None:
    for device in probe.last["aqara/bridge/devices"].json():
        level = device["topic"].split("/")[1]
        assert not set(level) & {"+", "#", "/", "\x00"}
        assert device["topic"] == f"aqara/{level}"


async def test_hub_push_updates_retained_topic(daemon: Daemon, hub: StudioSimulator,
                                               probe: MqttProbe) -> None:
    hub.set_value(PLUG, 1, "EnergyManagement", "CurrentPower", 1234.5)
    assert await probe.value("aqara/kitchen_plug/1/EnergyManagement/CurrentPower",
                             "1234.5") == "1234.5"
    document = await probe.wait_for(
        lambda: (d := probe.last["aqara/kitchen_plug"].json())["1"]["EnergyManagement"]
        ["CurrentPower"] == 1234.5 and d)
    assert document["1"]["Output"]["OnOff"] is False


async def test_set_reaches_hub_and_state_follows_hub(daemon: Daemon, hub: StudioSimulator,
                                                     probe: MqttProbe) -> None:
    await probe.publish(f"{PLUG_ONOFF}/set", "ON")
    assert await probe.value(PLUG_ONOFF, "true") == "true"
    assert hub.get_value(PLUG, 1, "Output", "OnOff") is True
    (request,) = executes(hub)
    assert request["data"] == [{"deviceId": PLUG, "endpointId": 1, "functionCode": "Output",
                                "traitCode": "OnOff", "value": True}]


async def test_writes_within_the_window_are_coalesced(daemon: Daemon, hub: StudioSimulator,
                                                      probe: MqttProbe) -> None:
    level = "aqara/dining_light/1/LevelControl/CurrentLevel"
    for value in ("10", "20", "30"):
        await probe.publish(f"{level}/set", value)
    await probe.publish("aqara/dining_light/1/ColorControl/ColorTemperature/set", "400")
    assert await probe.value(level, "30") == "30"
    await probe.value("aqara/dining_light/1/ColorControl/ColorTemperature", "400")
    requests = executes(hub)
    assert len(requests) == 2, requests  # the first at once, the rest gathered in the window
    assert [(i["traitCode"], i["value"]) for i in requests[0]["data"]] == [("CurrentLevel", 10)]
    assert [(i["traitCode"], i["value"]) for i in requests[1]["data"]] == [
        ("CurrentLevel", 30), ("ColorTemperature", 400)]


async def test_device_level_set_is_one_hub_call(daemon: Daemon, hub: StudioSimulator,
                                                probe: MqttProbe) -> None:
    await probe.publish("aqara/dining_light/set", json.dumps(
        {"1": {"Output": {"OnOff": "OFF"}, "LevelControl": {"CurrentLevel": 5}}}))
    await probe.value("aqara/dining_light/1/Output/OnOff", "false")
    await probe.value("aqara/dining_light/1/LevelControl/CurrentLevel", "5")
    assert len(executes(hub)) == 1


async def test_the_device_document_sent_back_edited_writes_only_what_changed(
        daemon: Daemon, hub: StudioSimulator, probe: MqttProbe) -> None:
    document = (await probe.wait_for(lambda: probe.last.get("aqara/kitchen_plug"))).json()
    assert document["0"]["BasicInformation"]["FirmwareRevision"]  # read-only members are in it
    document["1"]["Output"]["OnOff"] = not document["1"]["Output"]["OnOff"]
    await probe.publish("aqara/kitchen_plug/set", json.dumps(document),
                        response_topic="aqara/_replies/doc")
    assert (await probe.next_on("aqara/_replies/doc", 0)).json()["status"] == "ok"
    await probe.value(PLUG_ONOFF, json.dumps(document["1"]["Output"]["OnOff"]))
    (request,) = executes(hub)
    sent = {(i["functionCode"], i["traitCode"]) for i in request["data"]}
    assert ("Output", "OnOff") in sent
    assert not any(function == "BasicInformation" for function, _ in sent)
    # a real attempt to change a read-only member is refused whole, naming it
    document["0"]["BasicInformation"]["FirmwareRevision"] = "9.9.9"
    start = len(probe.messages)
    await probe.publish("aqara/kitchen_plug/set", json.dumps(document))
    entry = (await probe.next_on("aqara/bridge/log", start)).json()
    assert "0.BasicInformation.FirmwareRevision is read-only" in entry["message"]
    assert len(executes(hub)) == 1


BAD_WRITES = [
    ("aqara/kitchen_plug/1/Output/OnOff/set", "banana", "banana"),
    ("aqara/no_such_device/1/Output/OnOff/set", "ON", "unknown device 'no_such_device'"),
    ("aqara/kitchen_plug/1/Output/Nope/set", "ON", "has no trait 1.Output.Nope"),
    ("aqara/kitchen_plug/0/BasicInformation/FirmwareRevision/set", "1.0", "read-only"),
    ("aqara/dining_light/1/LevelControl/CurrentLevel/set", "150", "maximum 100"),
    ("aqara/dining_light/1/LevelControl/CurrentLevel/set", "12.5", "12.5"),
    (f"aqara/{THERMOSTAT}/1/Thermostat/HeaterCoolerMode/set", "Turbo", "Turbo"),
    (f"aqara/{THERMOSTAT}/1/Thermostat/SetTemperature/set", " ", "empty"),
    ("aqara/kitchen_plug/x/Output/OnOff/set", "ON", "not an integer"),
    ("aqara/dining_light/set", '{"1": {"Output": {"OnOff": true}, '
     '"LevelControl": {"CurrentLevel": 900}}}', "maximum 100"),
    ("aqara/dining_light/set", "[1, 2]", "JSON object"),
    (f"aqara/{OFFLINE}/0/BasicInformation/Reachable/set", "ON", "read-only"),
]


async def test_bad_writes_are_rejected_and_nothing_reaches_the_hub(
    daemon: Daemon, hub: StudioSimulator, probe: MqttProbe
) -> None:
    for topic, payload, reason in BAD_WRITES:
        start = len(probe.messages)
        await probe.publish(topic, payload)
        entry = (await probe.next_on("aqara/bridge/log", start)).json()
        assert entry["level"] == "warning"
        assert reason in entry["message"], (topic, entry)
        assert entry["topic"] == topic
    # the bridge is still alive and still writes valid commands
    await probe.publish(f"{PLUG_ONOFF}/set", "toggle")
    await probe.value(PLUG_ONOFF, "true")
    assert len(executes(hub)) == 1


async def test_retained_commands_are_not_replayed(mosquitto: Mosquitto, hub: StudioSimulator,
                                                  probe: MqttProbe) -> None:
    await probe.publish(f"{PLUG_ONOFF}/set", "ON", retain=True)  # left behind by a careless client
    async with running(Daemon(bridge_config(mosquitto, hub))):
        entry = (await probe.next_on("aqara/bridge/log", 0)).json()
        assert "retained command ignored" in entry["message"]
        await probe.value(PLUG_ONOFF, "false")
    assert executes(hub) == []


async def test_empty_string_is_a_value_not_a_deletion(mosquitto: Mosquitto, daemon: Daemon,
                                                       hub: StudioSimulator,
                                                       probe: MqttProbe) -> None:
    topic = "aqara/kitchen_plug/0/BasicInformation/FirmwareRevision"
    hub.set_value(PLUG, 0, "BasicInformation", "FirmwareRevision", "")
    assert (await probe.value(topic, '""')) == '""'
    await probe.wait_for(lambda: json.loads(probe.last["aqara/kitchen_plug"].payload)["0"][
        "BasicInformation"]["FirmwareRevision"] == "")
    # a subscriber arriving now still gets the value, typed: a JSON string
    fresh = await MqttProbe(mosquitto.port, [topic, "aqara/_sync/#"]).start()
    try:
        await synced(fresh)
        (message,) = [m for m in fresh.messages if m.topic == topic]
        assert message.retain
        assert message.payload == b'""'
        assert message.content_type == "application/json"
    finally:
        fresh.stop()


async def test_content_types_tell_strings_from_numbers(daemon: Daemon, probe: MqttProbe) -> None:
    firmware = await probe.value("aqara/kitchen_plug/0/BasicInformation/FirmwareRevision")
    assert firmware  # e.g. "1.0.3": text, not a number to parse
    types = {m.topic.rsplit("/", 1)[-1]: m.content_type for m in probe.messages}
    assert types["FirmwareRevision"] == "text/plain"
    assert types["OnOff"] == "application/json"
    await probe.value("aqara/kitchen_plug")
    assert probe.last["aqara/kitchen_plug"].content_type == "application/json"
    await probe.value("aqara/kitchen_plug/availability")
    assert probe.last["aqara/kitchen_plug/availability"].content_type == types["FirmwareRevision"]


async def test_mqtt5_response_topic_answers_writes(daemon: Daemon, probe: MqttProbe) -> None:
    start = len(probe.messages)
    await probe.publish(f"{PLUG_ONOFF}/set", "ON", response_topic="aqara/_replies/a",
                        correlation=b"req-1")
    reply = await probe.next_on("aqara/_replies/a", start)
    assert reply.json()["status"] == "ok"
    assert reply.correlation_data == b"req-1"
    await probe.publish("aqara/dining_light/1/LevelControl/CurrentLevel/set", "-3",
                        response_topic="aqara/_replies/b", correlation=b"req-2")
    reply = await probe.next_on("aqara/_replies/b", start)
    body = reply.json()
    assert body["status"] == "error"
    assert "minimum 0" in body["error"]["message"]
    assert reply.correlation_data == b"req-2"


async def test_hub_refusal_is_reported(daemon: Daemon, hub: StudioSimulator,
                                       probe: MqttProbe) -> None:
    hub.set_online(LIGHT, False)  # the hub refuses writes to an offline device (code 602)
    await probe.value("aqara/dining_light/availability", "offline")
    start = len(probe.messages)
    await probe.publish("aqara/dining_light/1/Output/OnOff/set", "OFF")
    entry = (await probe.next_on("aqara/bridge/log", start)).json()
    assert "offline" in entry["message"]
    assert executes(hub) == []


async def test_get_republishes_from_the_hub(daemon: Daemon, probe: MqttProbe) -> None:
    topic = "aqara/kitchen_plug/1/EnergyManagement/CurrentVoltage"
    value = await probe.value(topic)
    start = len(probe.messages)
    await probe.publish(f"{topic}/get", "")
    again = await probe.next_on(topic, start)
    assert again.text == value


async def test_device_lifecycle_events_and_cleanup(daemon: Daemon, hub: StudioSimulator,
                                                   probe: MqttProbe) -> None:
    new_id = "lumi.158d000abc0001"
    start = len(probe.messages)
    hub.add_device(smart_plug(new_id, "Garden Plug", create_time=1, on=True))
    await probe.value(f"aqara/{new_id}/1/Output/OnOff", "true")
    added = (await probe.next_on("aqara/bridge/event", start)).json()
    assert added["type"] == "device_added"
    assert added["device"]["id"] == new_id

    start = len(probe.messages)
    hub.rename_device(new_id, "Garden Plug 2")
    renamed = (await probe.next_on("aqara/bridge/event", start)).json()
    assert renamed["type"] == "device_renamed"

    topics = [t for t in probe.last if t.startswith(f"aqara/{new_id}")]
    assert len(topics) > 5
    start = len(probe.messages)
    hub.remove_device(new_id)
    for topic in topics:
        await probe.value(topic, "")
    removed = (await probe.next_on("aqara/bridge/event", start)).json()
    assert removed["type"] == "device_removed"
    late = await MqttProbe(probe.port, ["aqara/#"]).start()
    try:
        await synced(late)
        assert [t for t in late.last if t.startswith(f"aqara/{new_id}")] == []
        assert new_id not in {d["id"] for d in late.last["aqara/bridge/devices"].json()}
    finally:
        late.stop()


async def test_hub_drop_converges_to_hub_state(daemon: Daemon, hub: StudioSimulator,
                                               probe: MqttProbe) -> None:
    await hub.drop_connections()
    hub.set_value(PLUG, 1, "EnergyManagement", "CurrentPower", 77.0)  # while we are away
    hub.remove_device(SWITCH)
    assert await probe.value("aqara/kitchen_plug/1/EnergyManagement/CurrentPower", "77")
    await probe.value(f"aqara/{SWITCH}/2/Output/OnOff", "")
    await probe.value("aqara/kitchen_plug/availability", "online")
    info = probe.last["aqara/bridge/info"].json()
    assert info["backends"][0]["connected"] is True


async def test_broker_restart_republishes_everything(daemon: Daemon, hub: StudioSimulator,
                                                     mosquitto: Mosquitto) -> None:
    mosquitto.restart()  # no persistence: every retained message is gone
    hub.set_value(PLUG, 1, "EnergyManagement", "CurrentPower", 9.5)
    fresh = await MqttProbe(mosquitto.port, ["aqara/#"]).start()
    try:
        await fresh.value("aqara/bridge/state", "online", timeout=30)
        await fresh.value("aqara/kitchen_plug/1/EnergyManagement/CurrentPower", "9.5")
        await fresh.value(PLUG_ONOFF, "false")
        await fresh.wait_for(lambda: fresh.last.get("aqara/bridge/devices"))
    finally:
        fresh.stop()


async def test_garbage_from_the_hub_is_survived(daemon: Daemon, hub: StudioSimulator,
                                                probe: MqttProbe) -> None:
    hub.garbage = True
    start = len(probe.messages)
    await probe.publish(f"{PLUG_ONOFF}/set", "ON", response_topic="aqara/_replies/g")
    reply = (await probe.next_on("aqara/_replies/g", start, timeout=15)).json()
    assert reply["status"] == "error"
    hub.garbage = False
    await probe.publish(f"{PLUG_ONOFF}/set", "ON")
    await probe.value(PLUG_ONOFF, "true", timeout=20)


async def test_wrong_token_is_reported_without_leaking(mosquitto: Mosquitto,
                                                       hub: StudioSimulator,
                                                       probe: MqttProbe) -> None:
    wrong = "definitely-not-the-token-8812"
    async with running(Daemon(bridge_config(mosquitto, hub, token=wrong))):
        info = await probe.wait_for(
            lambda: (m := probe.last.get("aqara/bridge/info")) and
            "authentication failed" in m.json()["backends"][0]["detail"] and m)
        assert info.json()["backends"][0]["connected"] is False
    for message in probe.messages:
        assert wrong.encode() not in message.payload
        assert TOKEN.encode() not in message.payload


async def test_secrets_never_reach_mqtt(daemon: Daemon, probe: MqttProbe) -> None:
    await synced(probe)
    assert probe.messages
    for message in probe.messages:
        assert TOKEN.encode() not in message.payload, message.topic


async def test_mqtt_311_works(mosquitto: Mosquitto, hub: StudioSimulator,
                              probe: MqttProbe) -> None:
    config = bridge_config(mosquitto, hub, mqtt_extra=', version: "3.1.1"')
    async with running(Daemon(config)) as bridge:
        await probe.value("aqara/bridge/state", "online")
        assert bridge.mqtt.version == "3.1.1"
        await probe.publish(f"{PLUG_ONOFF}/set", "1")
        await probe.value(PLUG_ONOFF, "true")


async def test_stop_publishes_offline(mosquitto: Mosquitto, hub: StudioSimulator,
                                      probe: MqttProbe) -> None:
    async with running(Daemon(bridge_config(mosquitto, hub))):
        await probe.value("aqara/bridge/state", "online")
    assert await probe.value("aqara/bridge/state", "offline") == "offline"


async def test_curtain_position_follows_its_target(daemon: Daemon, probe: MqttProbe) -> None:
    base = "aqara/lumi.158d0006c1d2e3/1/WindowCovering"
    assert await probe.value(f"{base}/CurrentPositionPercentage") == "60"
    start = len(probe.messages)
    await probe.publish(f"{base}/TargetPositionPercentage/set", "10")
    await probe.value(f"{base}/CurrentPositionPercentage", "10")
    await probe.value(f"{base}/OperationalStatus", "Stopped")
    moves = [m.text for m in probe.messages[start:]
             if m.topic in (f"{base}/CurrentPositionPercentage", f"{base}/OperationalStatus")]
    assert moves[0] == "Closing"
    assert moves[-2:] == ["10", "Stopped"]
    assert "30" in moves  # it went through the positions in between
