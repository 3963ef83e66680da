"""What the MQTT link parks reaches controllers in an order they can follow, for every output:
a start-up burst far larger than the window, and a dropped connection that parks everything."""

from __future__ import annotations

import json
import socket
from typing import Any

from bridge.app import Daemon
from bridge.simulators.studio import StudioSimulator
from tests.integration.conftest import PLUG, bridge_config, running
from tests.mosquitto import Mosquitto
from tests.mqtt_probe import MqttProbe, Received

HOMIE = "homie/5/"
DISCOVERY = "homeassistant/device/"


def out_of_order(messages: list[Received]) -> list[str]:
    """Each order a controller relies on that the messages break: a Homie device's last
    ``$description`` before its last ``$state`` (``ready``); a hub's discovery config before
    the configs of the devices that name it ``via_device``."""
    broken: list[str] = []
    last: dict[str, int] = {}
    for index, message in enumerate(messages):
        last[message.topic] = index
    devices = {t[len(HOMIE):].split("/")[0] for t in last if t.startswith(HOMIE)}
    for device in devices:
        state, description = f"{HOMIE}{device}/$state", f"{HOMIE}{device}/$description"
        if state in last and description in last and messages[last[state]].text == "ready" and (
                last[description] > last[state]):
            broken.append(f"{device}: ready before its description")
    configs = {json.loads(messages[i].payload)["dev"]["ids"][0]: i
               for t, i in last.items() if t.startswith(DISCOVERY) and messages[i].payload}
    for topic, index in last.items():
        if topic.startswith(DISCOVERY) and messages[index].payload:
            via = json.loads(messages[index].payload)["dev"].get("via_device")
            if via is not None and configs.get(via, -1) > index:  # absent: retained before
                broken.append(f"{topic}: announced before its hub {via}")
    return broken


def configs_in(messages: list[Received]) -> dict[str, dict[str, Any]]:
    """Device id (``dev.ids[0]``) → its latest discovery config among ``messages``."""
    configs = {}
    for message in messages:
        if message.topic.startswith(DISCOVERY) and message.payload:
            config = json.loads(message.payload)
            configs[config["dev"]["ids"][0]] = config
    return configs


async def test_everything_parked_leaves_in_an_order_controllers_can_follow(
        mosquitto: Mosquitto, hub: StudioSimulator) -> None:
    watcher = await MqttProbe(mosquitto.port, ["homie/#", "homeassistant/#", "aqara/#"]).start()
    try:
        config = bridge_config(mosquitto, hub, extra="homie: {enabled: true}",
                               mqtt_extra=", max_queued: 100")
        async with running(Daemon(config)) as daemon:
            devices = await watcher.wait_for(lambda: (m := watcher.last.get(
                "aqara/bridge/devices")) and m.json())

            def all_ready() -> bool:
                states = [m for t, m in watcher.last.items()
                          if t.startswith(HOMIE) and t.endswith("/$state")]
                return len(states) > len(devices) and all(m.text == "ready" for m in states)

            await watcher.wait_for(all_ready, timeout=30)
            # and every discovery config, the hubs' included (a fresh broker: all of them)
            await watcher.wait_for(lambda: len(configs_in(watcher.messages)) >= len(devices),
                                   timeout=30)
            hubs = {via for config in configs_in(watcher.messages).values()
                    if (via := config["dev"].get("via_device"))}
            assert hubs
            assert hubs <= set(configs_in(watcher.messages))
            assert daemon.mqtt.parked_peak > 100  # the burst was parked
            assert out_of_order(watcher.messages) == []
            start = len(watcher.messages)
            assert daemon.homie_keeper is not None
            for client in (daemon.mqtt._client, daemon.homie_keeper._client):
                sock = client.socket() if client is not None else None
                assert isinstance(sock, socket.socket)
                sock.shutdown(socket.SHUT_RDWR)  # dropped: everything parks until it is back
            for watts in range(1, 51):
                hub.set_value(PLUG, 1, "EnergyManagement", "CurrentPower", watts)
            await watcher.value("aqara/kitchen_plug/1/EnergyManagement/CurrentPower", "50")
            await watcher.wait_for(all_ready)
            assert daemon.mqtt.connections == 2
            assert out_of_order(watcher.messages[start:]) == []
            assert any(m.topic.endswith("/$description") for m in watcher.messages[start:])
    finally:
        watcher.stop()
