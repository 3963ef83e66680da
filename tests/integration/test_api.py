"""The management API over a real Mosquitto: every command, success and failure, both styles."""

from __future__ import annotations

import asyncio
import itertools
import json
import shlex
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from bridge.app import Daemon
from bridge.simulators.studio import StudioSimulator
from tests.integration.conftest import LIGHT, PLUG, SWITCH
from tests.mqtt_probe import MqttProbe

_ids = itertools.count(1)


async def call(probe: MqttProbe, command: str, args: dict[str, Any] | None = None,
               raw: str | None = None) -> dict[str, Any]:
    """Send a request with a fresh transaction id and return the matching response."""
    transaction = f"t{next(_ids)}"
    body = raw if raw is not None else json.dumps({**(args or {}), "transaction": transaction})
    start = len(probe.messages)
    await probe.publish(f"aqara/bridge/request/{command}", body)
    topic = f"aqara/bridge/response/{command}"

    def answered() -> dict[str, Any] | None:
        for message in probe.messages[start:]:
            if message.topic == topic:
                response: dict[str, Any] = message.json()
                if raw is not None or response.get("transaction") == transaction:
                    return response
        return None

    result: dict[str, Any] = await probe.wait_for(answered, timeout=15)
    return result


def ok(response: dict[str, Any]) -> Any:
    assert response["status"] == "ok", response
    assert "error" not in response
    return response["data"]


def error(response: dict[str, Any], *words: str) -> dict[str, Any]:
    assert response["status"] == "error", response
    failure: dict[str, Any] = response["error"]
    for word in words:
        assert word in failure["message"], (word, failure)
    return failure


async def test_transaction_is_echoed_and_bad_payloads_answered(daemon: Daemon,
                                                               probe: MqttProbe) -> None:
    response = await call(probe, "health_check")
    assert response["transaction"].startswith("t")
    assert error(await call(probe, "health_check", raw="not json"), "not JSON")["code"] == (
        "invalid_request")
    error(await call(probe, "health_check", raw="[1, 2]"), "JSON object")
    error(await call(probe, "no/such/command"), "unknown command")
    error(await call(probe, "health_check", {"surprise": 1}), "surprise", "unknown field")


async def test_mqtt5_response_topic_and_correlation(daemon: Daemon, probe: MqttProbe) -> None:
    start = len(probe.messages)
    await probe.publish("aqara/bridge/request/device", json.dumps({"device": "kitchen_plug"}),
                        response_topic="aqara/_replies/rr", correlation=b"\x01corr")
    reply = await probe.next_on("aqara/_replies/rr", start)
    assert reply.correlation_data == b"\x01corr"
    assert reply.json()["data"]["id"] == PLUG
    assert "transaction" not in reply.json()
    # the response topic also gets it (for 3.1.1 clients and zigbee2mqtt habits)
    assert (await probe.next_on("aqara/bridge/response/device", start)).json()["status"] == "ok"


async def test_devices_filters_and_pages(daemon: Daemon, probe: MqttProbe) -> None:
    everything = ok(await call(probe, "devices"))
    assert everything["total"] == 24
    lights = ok(await call(probe, "devices", {"type": "Light"}))
    assert lights["total"] >= 2
    assert all("Light" in d["types"] for d in lights["devices"])
    page2 = ok(await call(probe, "devices", {"page": 2, "page_size": 10}))
    assert len(page2["devices"]) == 10
    assert page2["devices"][0]["id"] == everything["devices"][10]["id"]
    error(await call(probe, "devices", {"page": 0}), "page")
    error(await call(probe, "devices", {"page_size": "10"}), "page_size")


async def test_device_and_refresh(daemon: Daemon, hub: StudioSimulator,
                                  probe: MqttProbe) -> None:
    device = ok(await call(probe, "device", {"device": "kitchen_plug"}))
    assert device["state"]["1"]["Output"]["OnOff"] is False
    assert device["available"] is True
    assert ok(await call(probe, "device", {"device": PLUG}))["friendly_name"] == "kitchen_plug"
    assert error(await call(probe, "device", {"device": "nope"}), "nope")["code"] == (
        "unknown_device")
    error(await call(probe, "device", {}), "device")
    state = ok(await call(probe, "device/refresh", {"device": SWITCH}))
    assert state["2"]["Output"]["OnOff"] in (True, False)
    error(await call(probe, "device/refresh", {"device": "nope"}), "nope")


async def test_rename_moves_every_topic(daemon: Daemon, probe: MqttProbe) -> None:
    old = [t for t in probe.last if t.startswith("aqara/kitchen_plug/") and probe.last[t].text]
    assert len(old) > 5
    data = ok(await call(probe, "device/rename", {"device": "kitchen_plug", "name": "kettle"}))
    assert data["topic"] == "aqara/kettle"
    for topic in old:
        assert await probe.value(topic, "") == ""
    await probe.value("aqara/kettle/1/Output/OnOff", "false")
    await probe.value("aqara/kettle/availability", "online")
    devices = {d["id"]: d for d in probe.last["aqara/bridge/devices"].json()}
    assert devices[PLUG]["friendly_name"] == "kettle"
    await probe.publish("aqara/kettle/1/Output/OnOff/set", "ON")
    await probe.value("aqara/kettle/1/Output/OnOff", "true")
    error(await call(probe, "device/rename", {"device": "kettle", "name": "dining_light"}),
          LIGHT)
    error(await call(probe, "device/rename", {"device": "kettle", "name": "a/b"}), "a_b")


async def test_resync(daemon: Daemon, hub: StudioSimulator, probe: MqttProbe) -> None:
    data = ok(await call(probe, "resync"))
    assert data["devices"] == {"home": 24}
    error(await call(probe, "resync", {"backend": "elsewhere"}), "elsewhere")


async def test_health_check_and_options(daemon: Daemon, probe: MqttProbe) -> None:
    health = ok(await call(probe, "health_check"))
    assert health["healthy"] is True
    assert health["health"] == {"state": "ok", "problems": [], "hubs": {"home": "connected"}}
    assert health["mqtt"]["connected"] is True
    assert health["mqtt"]["denied_publishes"] == 0
    assert health["backends"][0]["devices"] == 24
    assert health["devices"] == 24
    options = ok(await call(probe, "options", {"log_level": "debug", "write_window_ms": 10}))
    assert options["applied"] == {"log_level": "debug", "write_window_ms": 10}
    assert "mqtt" in options["restart_required_for"]
    assert daemon.bridge.options.write_window == 0.01
    error(await call(probe, "options", {"write_window_ms": 99999}), "write_window_ms")
    error(await call(probe, "options", {"log_level": "loud"}), "log_level")


async def test_restart_brings_the_bridge_back(daemon: Daemon, probe: MqttProbe) -> None:
    assert ok(await call(probe, "restart")) == {"restarting": True}
    await probe.value("aqara/bridge/state", "offline")
    # the test's daemon fixture is not behind run_until_signalled: restarting stops it
    assert daemon.restart_requested


async def test_history(daemon: Daemon, hub: StudioSimulator, probe: MqttProbe) -> None:
    now = int(time.time() * 1000)
    for i, watts in enumerate((10.0, 20.0, 30.0)):
        hub.record_history_at(PLUG, 1, "EnergyManagement", "CurrentPower", watts,
                              now - 60_000 + i * 1000)
    args = {"device": "kitchen_plug", "endpoint": 1, "function": "EnergyManagement",
            "trait": "CurrentPower", "start": now - 120_000, "end": now, "order": "asc"}
    data = ok(await call(probe, "history", args))
    values = [s["value"] for s in data["samples"]]
    assert values[-3:] == [10, 20, 30]
    page = ok(await call(probe, "history", {**args, "page_size": 1, "page": 2}))
    assert len(page["samples"]) == 1
    assert page["total"] == data["total"]
    error(await call(probe, "history", {**args, "start": now, "end": now - 1}), "start")
    error(await call(probe, "history", {**args, "trait": "Nope"}), "Nope")
    error(await call(probe, "history", {**args, "start": "yesterday"}), "start")


SCRIPT = {
    "metadata": {"name": "Plug follows switch", "description": "test", "scope": []},
    "automations": [{
        "name": "When the left rocker turns on, the kitchen plug turns on",
        "starters": [{"type": "property.event",
                      "source": {"type": "device.property", "deviceId": SWITCH, "endpointId": 2,
                                 "functionCode": "Output", "traitCode": "OnOff"},
                      "is": True}],
        "actions": [{"type": "device.trait.write", "functionCode": "Output",
                     "traitCode": "OnOff", "targets": [{"deviceId": PLUG, "endpointIds": [1]}],
                     "value": True}],
    }],
}


async def test_automation_lifecycle_and_it_fires(daemon: Daemon, hub: StudioSimulator,
                                                 probe: MqttProbe) -> None:
    capabilities = ok(await call(probe, "automation/capabilities"))
    assert any(d["deviceId"] == PLUG for d in capabilities["devices"])
    created = ok(await call(probe, "automation/create", {"script": SCRIPT}))
    automation_id = created["id"]
    assert automation_id
    listing = ok(await call(probe, "automation/list"))
    assert [a["id"] for a in listing["automations"]] == [automation_id]
    details = ok(await call(probe, "automation/get", {"id": automation_id}))
    assert details["script"]["metadata"]["name"] == "Plug follows switch"
    assert details["enabled"] is True

    hub.set_value(SWITCH, 2, "Output", "OnOff", False)
    hub.set_value(SWITCH, 2, "Output", "OnOff", True)  # the starter: the plug must follow
    await probe.value("aqara/kitchen_plug/1/Output/OnOff", "true")

    ok(await call(probe, "automation/update", {"id": automation_id, "enabled": False,
                                                "name": "renamed"}))
    assert ok(await call(probe, "automation/get", {"id": automation_id}))["name"] == "renamed"
    ok(await call(probe, "automation/delete", {"id": automation_id}))
    assert ok(await call(probe, "automation/list"))["automations"] == []


async def test_automation_failures(daemon: Daemon, probe: MqttProbe) -> None:
    error(await call(probe, "automation/create", {"script": "not an object"}), "script")
    broken = json.loads(json.dumps(SCRIPT))
    broken["automations"][0]["actions"][0]["traitCode"] = "Nope"
    failure = error(await call(probe, "automation/create", {"script": broken}), "Nope")
    assert failure["code"] == 400  # the hub's own code is passed through
    error(await call(probe, "automation/get", {"id": "missing"}))
    error(await call(probe, "automation/update", {"id": "x"}), "at least one")
    error(await call(probe, "automation/delete", {"id": "missing"}))
    error(await call(probe, "automation/list", {"backend": "elsewhere"}), "elsewhere")


async def test_mqtt311_clients_use_the_transaction(daemon: Daemon, probe: MqttProbe) -> None:
    old = await MqttProbe(probe.port, ["aqara/bridge/response/#"], paho.MQTTv311).start()
    try:
        start = len(old.messages)
        await old.publish("aqara/bridge/request/health_check", '{"transaction": 42}')
        response = (await old.next_on("aqara/bridge/response/health_check", start)).json()
        assert response["transaction"] == 42
        assert response["status"] == "ok"
    finally:
        old.stop()


def readme_rr_examples() -> list[list[str]]:
    """The ``mosquitto_rr`` lines of the README's Management API section, split like a shell."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Management API", 1)[1].split("\n## ", 1)[0]
    text = section.replace("\\\n", " ")
    return [shlex.split(line) for line in text.splitlines() if line.startswith("mosquitto_rr ")]


async def test_readme_mosquitto_rr_examples_work(daemon: Daemon, probe: MqttProbe) -> None:
    examples = readme_rr_examples()
    assert len(examples) >= 3
    for argv in examples:
        command = [argv[0], "-p", str(probe.port), "-W", "10", *argv[1:]]
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 20)
        assert process.returncode == 0, (argv, err)
        assert json.loads(out)["status"] == "ok", (argv, out)


async def test_argument_free_commands_refuse_arguments(daemon: Daemon, probe: MqttProbe) -> None:
    for command in ("restart", "health_check"):
        error(await call(probe, command, {"now": True}), "now", "unknown field")
    assert not daemon.restart_requested  # a refused restart does not restart
    failure = error(await call(probe, "automation/capabilities", {"backend": "elsewhere"}),
                    "elsewhere")
    assert failure["code"] == "unknown_backend"
