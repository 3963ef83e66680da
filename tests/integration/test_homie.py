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
    finally:
        homie.stop()


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
