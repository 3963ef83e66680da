"""Node-RED's real runtime (npm ``node-red``, tests/node/nodered_flow.mjs) with its stock
``mqtt in`` nodes on "auto-detect": the types a flow gets for every trait of the sample home.

scripts/test.sh installs the Node project with ``npm ci``; without Node.js or the package the test
is skipped with the reason (CI has both).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bridge.app import Daemon
from bridge.model import TraitAddress
from bridge.simulators.studio import StudioSimulator
from tests.integration.conftest import LIGHT, PLUG, SWITCH
from tests.mosquitto import Mosquitto
from tests.mqtt_probe import MqttProbe, Received

NODE_PROJECT = Path(__file__).resolve().parent.parent / "node"
DOCUMENT = "aqara/kitchen_plug"
TRAITS = "aqara/+/+/+/+"
FIRMWARE = (0, "BasicInformation", "FirmwareRevision")

# STRING traits whose text JSON would read as something else, set on the hub (device id, value)
STRINGS = [(SWITCH, "1.0"), ("lumi.158d0003a1f2e4", "2"), (PLUG, "true"),
           ("lumi.158d0004b81e07", "null"), ("lumi1.54ef4410fa2d", ""),
           ("lumi.158d00027d0a11", '"quoted"'), ("lumi.158d00027d0b42", "-0")]
CURTAIN = "lumi.158d0006c1d2e3"  # WindowCovering.OperationalStatus: options 0, 1, 2


@dataclass(frozen=True)
class Delivered:
    """One message as a Node-RED function node saw it."""

    kind: str
    payload: Any
    content_type: str | None


def kind_of(value: Any) -> str:
    """The harness's name for a value's type (JavaScript's typeof, with null and array apart)."""
    if value is None:
        return "null"
    kinds: dict[type, str] = {str: "string", bool: "boolean", int: "number", float: "number",
                              list: "array", dict: "object"}
    return kinds[type(value)]


def meant(message: Received) -> Delivered:
    """What a flow should get for a bridge message: an ``application/json`` payload parsed, a
    ``text/plain`` one as the string it is."""
    value = message.json() if message.content_type == "application/json" else message.text
    return Delivered(kind_of(value), value, message.content_type)


async def run_nodered(port: int, wanted: set[str]) -> dict[int, dict[str, Delivered]]:
    """Start the Node-RED harness and collect, per MQTT version (5, 4), the first delivery on
    every topic in ``wanted``; stop it once both have all of them."""
    node = shutil.which("node")
    if node is None or not (NODE_PROJECT / "node_modules" / "node-red").is_dir():
        pytest.skip("Node.js or tests/node/node_modules missing: run scripts/test.sh")
    process = await asyncio.create_subprocess_exec(
        node, str(NODE_PROJECT / "nodered_flow.mjs"), str(port), TRAITS, DOCUMENT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=NODE_PROJECT)
    assert process.stdin is not None
    assert process.stdout is not None
    seen: dict[int, dict[str, Delivered]] = {5: {}, 4: {}}
    try:
        async with asyncio.timeout(60):
            while any(wanted - set(topics) for topics in seen.values()):
                line = await process.stdout.readline()
                assert line, "Node-RED exited early"
                report = json.loads(line)
                seen[report["protocol"]].setdefault(report["topic"], Delivered(
                    report["kind"], report["payload"], report["contentType"]))
    finally:
        process.stdin.close()  # the harness stops Node-RED and exits
        try:
            _, err = await asyncio.wait_for(process.communicate(), 30)
        except TimeoutError:
            process.kill()
            raise
    assert process.returncode == 0, err.decode()
    return seen


def topic_of(daemon: Daemon, device: str, endpoint: int, function: str, trait: str) -> str:
    """The bridge's topic for one trait."""
    entry = daemon.bridge.devices[device]
    return daemon.topic_tree.trait_topic(entry, TraitAddress(device, endpoint, function, trait))


async def seed(hub: StudioSimulator, probe: MqttProbe, daemon: Daemon) -> dict[str, str]:
    """Put the awkward values on the hub and wait until the bridge has published them; returns
    the topic of each (by the value it was given)."""
    topics: dict[str, str] = {}
    changes = [(device, *FIRMWARE, value) for device, value in STRINGS]
    changes.append((CURTAIN, 1, "WindowCovering", "OperationalStatus", "7"))
    for device, endpoint, function, trait, value in changes:
        hub.set_value(device, endpoint, function, trait, value)
        topics[value] = topic = topic_of(daemon, device, endpoint, function, trait)
        # the empty string and one starting with a double quote go out JSON-encoded (README)
        await probe.value(topic, json.dumps(value) if value in ("", '"quoted"') else value)
    return topics


async def test_nodered_auto_detect_keeps_trait_types(
        mosquitto: Mosquitto, hub: StudioSimulator, probe: MqttProbe, daemon: Daemon) -> None:
    topics = await seed(hub, probe, daemon)
    trait_topics = {daemon.topic_tree.trait_topic(e, a) for e in daemon.bridge.devices.values()
                    for a, _ in e.device.iter_traits()}
    published = {t: m for t, m in probe.last.items() if t in trait_topics or t == DOCUMENT}
    assert len(published) > 100
    delivered = await run_nodered(mosquitto.port, set(published))

    # MQTT 5: every trait exactly as the bridge meant it, by its content type
    v5 = delivered[5]
    wrong = {t: (v5[t], meant(m)) for t, m in published.items() if v5[t] != meant(m)}
    assert wrong == {}
    strings = {value: v5[topic].payload for value, topic in topics.items()
               if v5[topic].kind == "string"}
    assert strings == {value: value for value in topics}
    assert v5[topic_of(daemon, LIGHT, *FIRMWARE)] == Delivered("string", "1.0.11", "text/plain")
    assert v5["aqara/kitchen_plug/1/Output/OnOff"].kind == "boolean"
    assert v5["aqara/kitchen_plug/1/EnergyManagement/CurrentPower"].kind == "number"
    assert v5[DOCUMENT].kind == "object"
    assert v5[DOCUMENT].payload["0"]["BasicInformation"]["FirmwareRevision"] == "true"
    kinds = {d.kind for d in v5.values()}
    assert {"string", "number", "boolean", "object", "array"} <= kinds

    # MQTT 3.1.1 has no content type: auto-detect parses whatever parses as JSON (README)
    v4 = delivered[4]
    assert all(d.content_type is None for d in v4.values())
    expected_v4 = {"1.0": 1, "2": 2, "true": True, "null": None, "": "", '"quoted"': '"quoted"',
                   "-0": 0, "7": 7}
    assert {value: v4[topics[value]].payload for value in expected_v4} == expected_v4
    assert [v4[topics[v]].kind for v in ("1.0", "true", "null")] == ["number", "boolean", "null"]
    assert v4[DOCUMENT] == Delivered("object", v5[DOCUMENT].payload, None)
