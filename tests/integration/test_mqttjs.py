"""MQTT.js 5, the client inside Node-RED, against the bridge (tests/node/bridge_client.mjs).

scripts/test.sh installs the Node project with ``npm ci``; without Node.js or the package the test
is skipped with the reason (CI has both).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from bridge.app import Daemon
from tests.mosquitto import Mosquitto

NODE_PROJECT = Path(__file__).resolve().parent.parent / "node"
TEXT = "text/plain"
JSON = "application/json"


async def run_client(port: int, device: str) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None or not (NODE_PROJECT / "node_modules" / "mqtt").is_dir():
        pytest.skip("Node.js or tests/node/node_modules missing: run scripts/test.sh")
    process = await asyncio.create_subprocess_exec(
        node, str(NODE_PROJECT / "bridge_client.mjs"), str(port), device,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=NODE_PROJECT)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    assert "error" not in result, result
    return result


async def test_mqttjs_client(mosquitto: Mosquitto, daemon: Daemon) -> None:
    result = await run_client(mosquitto.port, "kitchen_plug")

    # the documented trait wildcard brings trait topics and nothing else
    topics = result["wildcard_topics"]
    assert len(topics) > 100
    for topic in topics:
        base, device, endpoint, _function, _trait = topic.split("/")
        assert base == "aqara"
        assert device != "bridge"
        assert endpoint.isdigit()
    trait_topics = {daemon.topic_tree.trait_topic(e, a) for e in daemon.bridge.devices.values()
                    for a, _ in e.device.iter_traits()}
    assert set(topics) <= trait_topics

    # content types: strings stay strings, numbers and booleans are JSON
    retained = {m["topic"]: m for m in result["retained"]}
    assert all(m["retain"] for m in result["retained"])
    firmware = retained["aqara/kitchen_plug/0/BasicInformation/FirmwareRevision"]
    assert firmware["contentType"] == TEXT
    assert firmware["payloadFormatIndicator"] is True or firmware["payloadFormatIndicator"] == 1
    assert retained["aqara/kitchen_plug/1/Output/OnOff"]["contentType"] == JSON
    power = retained["aqara/kitchen_plug/1/EnergyManagement/CurrentPower"]
    assert power["contentType"] == JSON
    float(power["payload"])

    # /set round trip through the hub
    round_trip = result["round_trip"]
    assert round_trip["before"] in ("true", "false")
    assert round_trip["after"] == ("false" if round_trip["before"] == "true" else "true")

    # MQTT 5 request/response with correlation data
    health = result["health"]
    assert health["correlation"] == "health-1"
    assert health["contentType"] == JSON
    assert health["body"]["status"] == "ok"
    assert health["body"]["data"]["healthy"] is True
    refresh = result["refresh"]
    assert refresh["correlation"] == "refresh-2"
    assert refresh["body"]["status"] == "ok"
    assert refresh["body"]["data"]["1"]["Output"]["OnOff"] in (True, False)
    assert result["write"] == {"correlation": "write-3", "contentType": JSON,
                               "body": {"status": "ok", "data": None}}

    # the README's paths into the device JSON: JSONata needs the endpoint quoted
    state = daemon.bridge.devices["lumi.158d0002c660dc"].device.trait(1, "Output", "OnOff")
    assert state is not None
    jsonata = result["jsonata"]
    for expression in ("payload.`1`.Output.OnOff", 'payload."1".Output.OnOff',
                       '$lookup(payload, "1").Output.OnOff'):
        assert jsonata[expression] == {"value": state.value}, expression
    assert "cannot be used as a step" in jsonata["payload.1.Output.OnOff"]["error"]
    assert result["function_node"] == state.value

    # bad input answered on the response topic, nothing sent to the hub
    bad = result["bad_write"]
    assert bad["correlation"] == "bad-4"
    assert bad["body"]["status"] == "error"
    assert "banana" in bad["body"]["error"]["message"]
