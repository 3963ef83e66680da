"""``mqtt.topic_style: portable`` end to end on Mosquitto: no '.' or space in any topic the
bridge publishes, and commands to the portable levels reach the hub."""

from __future__ import annotations

import json

from bridge.app import Daemon
from bridge.config import parse_config
from bridge.simulators.studio import StudioSimulator
from tests.integration.conftest import LIGHT, TOKEN, running
from tests.integration.test_stale_topics import retained_under
from tests.mosquitto import Mosquitto
from tests.mqtt_probe import MqttProbe, eventually

PORTABLE_LIGHT = LIGHT.replace(".", "_")


async def test_portable_topics_carry_no_dot_or_space_and_commands_work(
        mosquitto: Mosquitto, hub: StudioSimulator, probe: MqttProbe) -> None:
    # no friendly names: the dotted hub ids become the levels
    config = parse_config(f"""
mqtt: {{url: "{mosquitto.url}", topic_style: portable}}
backends: [{{type: studio, name: home, url: "{hub.url}", token: "{TOKEN}"}}]
""", "portable.yaml")
    async with running(Daemon(config)) as daemon:
        await probe.value(f"aqara/{PORTABLE_LIGHT}/availability", "online")
        discovery = daemon.discovery
        assert discovery is not None
        await eventually(lambda: discovery.in_step and discovery.complete)
        retained = {**await retained_under(mosquitto, "aqara/#"),
                    **await retained_under(mosquitto, "homeassistant/#")}
        assert len(retained) > 100
        assert [t for t in retained if "." in t or " " in t] == []
        # Home Assistant's state and command topics are the portable ones too
        assert not [p for p in retained.values() if b"aqara/lumi1.5" in p]
        # /set and /get to the portable levels, and a command spelled with '_'
        await probe.publish(f"aqara/{PORTABLE_LIGHT}/1/Output/OnOff/set", "OFF")
        await probe.value(f"aqara/{PORTABLE_LIGHT}/1/Output/OnOff", "false")
        await probe.publish("aqara/bridge/request/device_rename",
                            json.dumps({"device": LIGHT, "name": "dining_light"}))
        answer = await probe.value("aqara/bridge/response/device_rename")
        assert json.loads(answer)["status"] == "ok"
        await probe.value("aqara/dining_light/availability", "online")
