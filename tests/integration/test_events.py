"""Button presses and gestures end to end: each hub simulator ⇄ daemon ⇄ real Mosquitto ⇄ probes
(and MQTT.js, Node-RED's client). A press arrives once per device and once on the stream, never
retained; a repeated hub delivery is dropped; a restart replays nothing; Home Assistant's
device trigger and event entity match what the bridge publishes."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bridge.app import Daemon
from bridge.outputs.homie import device_homie_id
from bridge.simulators.aqara_cloud import AqaraCloudSimulator, sample_account
from bridge.simulators.event_devices import event_devices
from bridge.simulators.studio import StudioSimulator
from bridge.simulators.tuya import TuyaSimulator
from bridge.simulators.tuya_home import CUBE, VIBRATION, WALL_REMOTE
from bridge.simulators.tuya_home import event_devices as tuya_event_devices
from tests.integration.conftest import bridge_config, running
from tests.integration.test_api import call, ok
from tests.integration.test_bridge_aqara_cloud import Cloud, started
from tests.integration.test_bridge_tuya import push_state, tuya_config
from tests.mosquitto import Mosquitto
from tests.mqtt_probe import MqttProbe, eventually, synced
from tests.unit.test_discovery import render

pytestmark = pytest.mark.integration

REMOTE = "lumi.158d0009e1a002"  # "Hall Remote", two buttons
MINI = "lumi.158d0009e1a001"
CUBE_AQARA = "lumi.158d0009e1a003"
BEDSIDE = "lumi.158d0002f8e7d6"
STREAM = "aqara/bridge/events"
NODE_PROJECT = Path(__file__).resolve().parent.parent / "node"


def event_messages(probe: MqttProbe, start: int = 0) -> list[Any]:
    """Messages on any device's event topic or the stream, from ``start`` on."""
    return [m for m in probe.messages[start:]
            if m.topic == STREAM or m.topic.endswith("/event")]


async def press_arrives(probe: MqttProbe, start: int, device: str, event_type: str,
                        button: str) -> dict[str, Any]:
    """Wait until the stream carried that press (after message ``start``); its JSON."""
    def found() -> dict[str, Any] | None:
        for message in probe.messages[start:]:
            if message.topic == STREAM:
                body: dict[str, Any] = message.json()
                if (body["device_id"], body["event_type"], body["button"]) == (
                        device, event_type, button):
                    return body
        return None

    result: dict[str, Any] = await probe.wait_for(found, 20)
    return result


async def exactly_once(probe: MqttProbe, start: int, fire: Any, device: str, topic: str,
                       event_type: str, button: str, sentinel: Any) -> dict[str, Any]:
    """Fire a press (delivered twice by the hub), then a different sentinel press: the bridge
    publishes in order on one connection, so once the sentinel is in, anything the first
    press caused is too. Returns the press's JSON after checking it came once per topic, never
    retained."""
    fire()
    body = await press_arrives(probe, start, device, event_type, button)
    sentinel()
    await press_arrives(probe, start, device, *sentinel.expect)
    messages = [m for m in event_messages(probe, start)
                if m.json()["event_type"] == event_type and m.json()["button"] == button]
    assert sorted(m.topic for m in messages) == sorted([topic, STREAM])
    assert not any(m.retain for m in messages)
    return body


class Sentinel:
    """A second press, distinct from the one under test."""

    def __init__(self, fire: Any, event_type: str, button: str) -> None:
        self.fire = fire
        self.expect = (event_type, button)

    def __call__(self) -> None:
        self.fire()


async def nothing_retained(port: int) -> None:
    """A fresh subscriber gets no event message (and nothing under the stream)."""
    fresh = await MqttProbe(port, ["aqara/#"]).start()
    try:
        await synced(fresh)
        assert event_messages(fresh) == []
    finally:
        fresh.stop()


def ha_matches(config: dict[str, Any], topic: str, payload: str) -> Any:
    """What Home Assistant's MQTT trigger compares: the rendered value template (None when the
    topic is not the trigger's)."""
    if topic != config["t"]:
        return None
    return render(config["val_tpl"], value=payload,
                  value_json=SimpleNamespace(**json.loads(payload)))


# ---- Studio ---------------------------------------------------------------------------------


async def test_studio_double_press_of_button_2_reaches_home_assistant_once(
        mosquitto: Mosquitto, studio: StudioSimulator) -> None:
    probe = await MqttProbe(mosquitto.port, ["aqara/#", "homeassistant/#"]).start()
    try:
        async with running(Daemon(bridge_config(mosquitto, studio))) as daemon:
            await probe.value("aqara/bridge/state", "online")
            object_id = "aqara_mqtt_" + REMOTE.replace(".", "_")
            discovery = await probe.wait_for(
                lambda: probe.last.get(f"homeassistant/device/{object_id}/config"))
            cmps = discovery.json()["cmps"]
            await probe.wait_for(lambda: daemon.bridge.devices.get(REMOTE))
            start = len(probe.messages)
            topic = f"aqara/{REMOTE}/event"
            body = await exactly_once(
                probe, start, lambda: studio.press(REMOTE, 2, "double", repeat=2), REMOTE,
                topic, "double", "2",
                Sentinel(lambda: studio.press(REMOTE, 1, "single"), "single", "1"))
            assert body == {"event_type": "double", "action": "button_2_double", "button": "2",
                            "endpoint": 2, "device": REMOTE, "device_id": REMOTE,
                            "time": body["time"]}
            assert daemon.bridge.events_repeated >= 1
            (message,) = [m for m in probe.messages[start:] if m.topic == topic
                          and m.json()["event_type"] == "double"]
            assert message.content_type == "application/json"

            # Home Assistant: exactly the "button 2, double press" trigger fires ...
            triggers = [c for c in cmps.values() if c["p"] == "device_automation"]
            fired = [(c["type"], c["stype"]) for c in triggers
                     if ha_matches(c, message.topic, message.text) == c["pl"]]
            assert fired == [("button_double_press", "button_2")]
            # ... and the button 2 event entity (only it) takes the message as a "double"
            entities = {k: c for k, c in cmps.items() if c["p"] == "event"}
            taken = {k: json.loads(r)["event_type"] for k, c in entities.items()
                     if (r := ha_matches({**c, "t": c["stat_t"]}, message.topic, message.text))}
            assert taken == {"event_2": "double"}
            assert "double" in entities["event_2"]["evt_typ"]
        await nothing_retained(mosquitto.port)
    finally:
        probe.stop()


async def test_studio_gestures_bedside_button_and_a_restart_that_replays_nothing(
        mosquitto: Mosquitto, studio: StudioSimulator) -> None:
    probe = await MqttProbe(mosquitto.port, ["aqara/#"]).start()
    try:
        async with running(Daemon(bridge_config(mosquitto, studio))) as daemon:
            await probe.value("aqara/bridge/state", "online")
            await probe.wait_for(lambda: CUBE_AQARA in daemon.bridge.devices)
            start = len(probe.messages)
            studio.press(CUBE_AQARA, 1, "rotate_left")
            cube = await press_arrives(probe, start, CUBE_AQARA, "rotate_left", "1")
            assert cube["action"] == "rotate_left"
            studio.press(BEDSIDE, 1, "hold")
            studio.press(BEDSIDE, 1, "release")
            await press_arrives(probe, start, BEDSIDE, "release", "1")
            fired = [m.json()["action"] for m in probe.messages[start:] if m.topic == STREAM]
            assert fired == ["rotate_left", "hold", "release"]
            # the press traits are not state: no trait topic, no value in the device document
            assert not [t for t in probe.last if "/Switch/" in t or "/Cube/" in t]
            devices = probe.last["aqara/bridge/devices"].json()
            assert next(d for d in devices if d["id"] == BEDSIDE)["events"]["sources"][0][
                "event_types"] == ["single", "double", "hold", "release"]
            answer = ok(await call(probe, "device", {"device": REMOTE}))
            assert answer["events"]["topic"] == f"aqara/{REMOTE}/event"
            assert answer["events"]["sources"][1]["actions"][1] == "button_2_double"
        restart = len(probe.messages)
        async with running(Daemon(bridge_config(mosquitto, studio))) as daemon:
            await probe.value("aqara/bridge/state", "online")
            await probe.wait_for(lambda: BEDSIDE in daemon.bridge.devices)
            await synced(probe)
            assert event_messages(probe, restart) == []  # nothing replayed
            start = len(probe.messages)
            studio.press(MINI, 1, "single")
            await press_arrives(probe, start, MINI, "single", "1")
            assert len([m for m in event_messages(probe, restart) if m.topic == STREAM]) == 1
    finally:
        probe.stop()


async def test_random_changes_press_buttons_too(mosquitto: Mosquitto,
                                                studio: StudioSimulator) -> None:
    probe = await MqttProbe(mosquitto.port, ["aqara/#"]).start()
    try:
        async with running(Daemon(bridge_config(mosquitto, studio))):
            await probe.value("aqara/bridge/state", "online")
            await probe.wait_for(lambda: probe.last.get("aqara/bridge/devices"))
            studio.start_random_changes(400, seed=7)
            try:
                await probe.wait_for(lambda: [m for m in probe.messages if m.topic == STREAM],
                                     20)
            finally:
                studio.stop_random_changes()
    finally:
        probe.stop()


# ---- Aqara cloud ----------------------------------------------------------------------------


async def test_aqara_cloud_push_of_a_press_arrives_once(mosquitto: Mosquitto,
                                                        probe: MqttProbe) -> None:
    sim = AqaraCloudSimulator([*sample_account(), *event_devices()])
    await sim.start()
    try:
        cloud = Cloud(sim)
        async with running(Daemon(cloud.config(mosquitto))) as daemon:
            await started(probe)
            await probe.wait_for(lambda: REMOTE in daemon.bridge.devices)
            await eventually(lambda: (REMOTE, "2.Switch.MultiPressComplete") in sim.subscriptions)
            start = len(probe.messages)
            await exactly_once(
                probe, start, lambda: sim.press(REMOTE, 2, "double", repeat=2), REMOTE,
                f"aqara/{REMOTE}/event", "double", "2",
                Sentinel(lambda: sim.press(REMOTE, 1, "hold"), "hold", "1"))
            vibration = "lumi.158d0009e1a004"
            sim.press(vibration, 1, "drop")
            dropped = await press_arrives(probe, start, vibration, "drop", "1")
            assert dropped["action"] == "drop"
        await nothing_retained(mosquitto.port)
    finally:
        await sim.stop()


# ---- Tuya -----------------------------------------------------------------------------------


async def test_tuya_press_arrives_once_and_polls_never_fire(mosquitto: Mosquitto,
                                                           probe: MqttProbe) -> None:
    sim = TuyaSimulator()
    for device in tuya_event_devices():
        sim.add_device(device)
    await sim.start()
    try:
        async with running(Daemon(tuya_config(mosquitto, sim, names=False))) as daemon:
            await probe.value("aqara/bridge/state", "online")
            await probe.wait_for(lambda: WALL_REMOTE in daemon.bridge.devices)
            await push_state(probe, connected=True)
            level = daemon.bridge.devices[WALL_REMOTE].topic_name
            start = len(probe.messages)
            body = await exactly_once(
                probe, start, lambda: sim.press(WALL_REMOTE, "switch2_value", "double_click",
                                                repeat=2),
                WALL_REMOTE, f"aqara/{level}/event", "double", "2",
                Sentinel(lambda: sim.press(WALL_REMOTE, "switch1_value", "long_press"), "hold",
                         "1"))
            assert body["action"] == "button_2_double"
            assert body["event_id"]  # Tuya's dataId
            # the status keeps "double_click": reading it again (a resync) fires nothing
            assert sim.get_status(WALL_REMOTE, "switch2_value") == "double_click"
            await daemon.bridge.resync(daemon.backends[0])
            sim.press(CUBE, "cube_action", "shake")
            await press_arrives(probe, start, CUBE, "shake", "1")
            sim.press(VIBRATION, "shock_state", "normal")  # quiet: no event
            sim.press(VIBRATION, "shock_state", "tilt")
            await press_arrives(probe, start, VIBRATION, "tilt", "1")
            fired = [m.json()["action"] for m in probe.messages[start:] if m.topic == STREAM]
            assert fired == ["button_2_double", "button_1_hold", "shake", "tilt"]
        await nothing_retained(mosquitto.port)
    finally:
        await sim.stop()


# ---- Node-RED's client ----------------------------------------------------------------------


async def test_mqttjs_gets_one_message_per_press(mosquitto: Mosquitto,
                                                 studio: StudioSimulator) -> None:
    node = shutil.which("node")
    if node is None or not (NODE_PROJECT / "node_modules" / "mqtt").is_dir():
        pytest.skip("Node.js or tests/node/node_modules missing: run scripts/test.sh")
    probe = await MqttProbe(mosquitto.port, ["aqara/#"]).start()
    try:
        async with running(Daemon(bridge_config(mosquitto, studio))) as daemon:
            await probe.value("aqara/bridge/state", "online")
            await probe.wait_for(lambda: REMOTE in daemon.bridge.devices)
            process = await asyncio.create_subprocess_exec(
                node, str(NODE_PROJECT / "event_client.mjs"), str(mosquitto.port), "2",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=NODE_PROJECT)
            assert process.stdout is not None
            ready = await asyncio.wait_for(process.stdout.readline(), 60)
            assert ready.strip() == b"ready"
            studio.press(REMOTE, 2, "double", repeat=2)
            studio.press(REMOTE, 1, "single")  # the last press: the client stops after it
            out, err = await asyncio.wait_for(process.communicate(), 60)
            assert process.returncode == 0, err.decode()
            result = json.loads(out)
    finally:
        probe.stop()
    stream = [m for m in result["messages"] if m["topic"] == STREAM]
    assert [m["payload"]["action"] for m in stream] == ["button_2_double", "button_1_single"]
    assert all(not m["retain"] and m["contentType"] == "application/json"
               for m in result["messages"])
    per_device = [m for m in result["messages"] if m["topic"] == f"aqara/{REMOTE}/event"]
    assert len(per_device) == 2


# ---- Homie ----------------------------------------------------------------------------------


async def test_homie_event_property_gets_the_press_not_retained(
        mosquitto: Mosquitto, studio: StudioSimulator) -> None:
    homie = await MqttProbe(mosquitto.port, ["homie/#"]).start()
    base = f"homie/5/{device_homie_id(REMOTE)}"
    try:
        async with running(Daemon(bridge_config(mosquitto, studio,
                                                extra="homie: {enabled: true}"))):
            assert await homie.value(f"{base}/$state", "ready")
            node = homie.last[f"{base}/$description"].json()["nodes"]["events"]
            assert node["properties"]["button-2"]["retained"] is False
            start = len(homie.messages)
            studio.press(REMOTE, 2, "double", repeat=2)
            studio.press(REMOTE, 1, "hold")
            await homie.next_on(f"{base}/events/button-1", start)
            got = [(m.topic.rsplit("/", 1)[1], m.text, m.retain)
                   for m in homie.messages[start:] if "/events/" in m.topic]
            assert got == [("button-2", "double", False), ("button-1", "hold", False)]
        fresh = await MqttProbe(mosquitto.port, ["homie/#"]).start()
        try:
            await synced(fresh, "homie")
            assert not [m for m in fresh.messages if "/events/" in m.topic]
        finally:
            fresh.stop()
    finally:
        homie.stop()
