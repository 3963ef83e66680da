"""Homie 5 through a real Mosquitto: lifecycle, values, commands, removal, the root's will."""

from __future__ import annotations

import json
import socket

from bridge.app import Daemon
from bridge.outputs.homie import device_homie_id
from bridge.simulators.studio import StudioSimulator
from tests.integration.conftest import PLUG, bridge_config, running
from tests.mosquitto import Mosquitto
from tests.mqtt_probe import MqttProbe

ROOT = "homie/5/aqara-mqtt"
PLUG_HOMIE = f"homie/5/{device_homie_id(PLUG)}"


def children(homie: MqttProbe) -> list[str]:
    """The children listed by the root device's latest description (none yet: empty)."""
    message = homie.last.get(f"{ROOT}/$description")
    return list(json.loads(message.payload)["children"]) if message else []


async def test_homie_lifecycle_values_and_commands(mosquitto: Mosquitto, hub: StudioSimulator,
                                                   probe: MqttProbe) -> None:
    homie = await MqttProbe(mosquitto.port, ["homie/#"]).start()
    try:
        async with running(Daemon(bridge_config(mosquitto, hub, extra="homie: {enabled: true}"))):
            assert await homie.value(f"{ROOT}/$state", "ready")
            assert await homie.value(f"{PLUG_HOMIE}/$state", "ready")
            description = json.loads(await homie.value(f"{PLUG_HOMIE}/$description"))
            assert description["homie"] == "5.0"
            assert description["root"] == description["parent"] == "aqara-mqtt"
            await homie.wait_for(lambda: device_homie_id(PLUG) in children(homie))
            onoff = f"{PLUG_HOMIE}/ep1-output/on-off"
            assert description["nodes"]["ep1-output"]["properties"]["on-off"]["settable"]
            assert await homie.value(onoff, "false")

            hub.set_value(PLUG, 1, "EnergyManagement", "CurrentPower", 55.5)
            assert await homie.value(f"{PLUG_HOMIE}/ep1-energy-management/current-power", "55.5")

            await homie.publish(f"{onoff}/set", "true")  # what openHAB sends
            assert await homie.value(onoff, "true")
            assert hub.get_value(PLUG, 1, "Output", "OnOff") is True

            start = len(probe.messages)
            await homie.publish(f"{onoff}/set", "maybe")
            entry = (await probe.next_on("aqara/bridge/log", start)).json()
            assert "maybe" in entry["message"]

            hub.remove_device(PLUG)
            assert await homie.value(f"{PLUG_HOMIE}/$state", "") == ""
            assert await homie.value(onoff, "") == ""
            await homie.wait_for(lambda: device_homie_id(PLUG) not in children(homie))
        assert await homie.value(f"{ROOT}/$state", "disconnected")
        assert_root_order(homie)
    finally:
        homie.stop()


def assert_root_order(homie: MqttProbe) -> None:
    """The root's description only changes in ``init`` (or before any state: messages parked
    while the link is held are sent latest per topic), and it says ``ready`` only after one."""
    state, described = None, False
    for message in homie.messages:
        if message.topic == f"{ROOT}/$state":
            state = message.text
            assert state != "ready" or described, "ready before any description"
        elif message.topic == f"{ROOT}/$description":
            assert state in (None, "init"), f"description changed while {state}"
            described = True


async def test_a_clean_stop_leaves_every_child_disconnected_before_the_root(
        mosquitto: Mosquitto, hub: StudioSimulator) -> None:
    homie = await MqttProbe(mosquitto.port, ["homie/5/+/$state"]).start()
    try:
        async with running(Daemon(bridge_config(mosquitto, hub, extra="homie: {enabled: true}"))
                           ) as daemon:
            assert await homie.value(f"{ROOT}/$state", "ready")
            ids = [device_homie_id(device_id) for device_id in daemon.bridge.devices]
            for homie_id in ids:
                assert await homie.value(f"homie/5/{homie_id}/$state", "ready")
            start = len(homie.messages)
        assert await homie.value(f"{ROOT}/$state", "disconnected")
        after = [(m.topic, m.text) for m in homie.messages[start:]]
        first = next(i for i, (_topic, text) in enumerate(after) if text == "disconnected")
        stopped = after[first:]  # from the first "disconnected" on, nothing else
        root_at = stopped.index((f"{ROOT}/$state", "disconnected"))
        assert sorted(stopped[:root_at]) == sorted(
            (f"homie/5/{homie_id}/$state", "disconnected") for homie_id in ids)
        # the keeper says it again as it leaves (in case the main link could not)
        assert set(stopped[root_at:]) == {(f"{ROOT}/$state", "disconnected")}
    finally:
        homie.stop()
    fresh = await MqttProbe(mosquitto.port, ["homie/5/+/$state"]).start()
    try:  # what a controller finds afterwards: nothing left "ready"
        await fresh.wait_for(lambda: len(fresh.last) == len(ids) + 1)
        assert {m.text for m in fresh.last.values()} == {"disconnected"}
    finally:
        fresh.stop()


async def test_root_device_is_lost_when_the_bridge_vanishes(
        mosquitto: Mosquitto, hub: StudioSimulator, probe: MqttProbe) -> None:
    homie = await MqttProbe(mosquitto.port, ["homie/5/aqara-mqtt/$state"]).start()
    try:
        config = bridge_config(mosquitto, hub, extra="homie: {enabled: true}")
        async with running(Daemon(config)) as daemon:
            await homie.value(f"{ROOT}/$state", "ready")
            keeper = daemon.homie_keeper
            assert keeper is not None
            start = len(homie.messages)
            sock = keeper._client.socket() if keeper._client else None
            assert isinstance(sock, socket.socket)
            sock.shutdown(socket.SHUT_RDWR)  # gone without a DISCONNECT: the broker sends the will
            await homie.wait_for(lambda: any(m.text == "lost" for m in homie.messages[start:]))
            await homie.value(f"{ROOT}/$state", "ready", timeout=30)  # and it comes back
    finally:
        homie.stop()
