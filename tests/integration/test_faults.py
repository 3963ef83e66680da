"""Faults and storms, end to end: a real Mosquitto, the Studio simulator, the daemon.

Each test injects one fault (a malformed hub answer, a nested frame, an ACL, a storm of pushes or
requests) and checks that the bridge says so once, keeps everything else working and converges.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge.app import Daemon
from bridge.backends.studio.client import SNAPSHOT_RETRIES, StudioBackend
from bridge.backends.studio.config import StudioBackendConfig
from bridge.simulators.studio import StudioSimulator
from bridge.simulators.studio_automations import check_value
from tests.fuzz import commands
from tests.integration.conftest import LIGHT, PLUG, SWITCH, TOKEN, bridge_config, running
from tests.logwatch import LogWatch
from tests.mosquitto import Mosquitto, running_mosquitto
from tests.mqtt_probe import MqttProbe, synced

pytestmark = pytest.mark.integration

PLUG_ONOFF = "aqara/kitchen_plug/1/Output/OnOff"
FIRMWARE = "aqara/kitchen_plug/0/BasicInformation/FirmwareRevision"
VOLTAGE = "aqara/kitchen_plug/1/EnergyManagement/CurrentVoltage"
MARKS = itertools.count(1)


def requests_of(hub: StudioSimulator, kind: str) -> int:
    """How many requests of this type the hub received."""
    return sum(1 for m in hub.received if m.get("type") == kind)


async def marker(hub: StudioSimulator, probe: MqttProbe) -> None:
    """Give the plug a voltage never seen before and wait until the bridge published it: every
    push the hub sent earlier has been handled by then (one WebSocket, in order)."""
    value = 100 + next(MARKS) / 8  # a binary fraction: printed exactly
    hub.set_value(PLUG, 1, "EnergyManagement", "CurrentVoltage", value)
    await probe.value(VOLTAGE, str(value), timeout=20)


def log_entries(probe: MqttProbe, text: str) -> list[dict[str, Any]]:
    entries = [m.json() for m in probe.on("aqara/bridge/log")]
    return [e for e in entries if text in e["message"]]


# ---- 2. one malformed device does not take the hub offline ------------------------------------


async def test_malformed_devices_are_skipped_logged_once_and_the_rest_published(
        mosquitto: Mosquitto, hub: StudioSimulator, probe: MqttProbe, logs: LogWatch) -> None:
    hub.corrupt_device(LIGHT, "endpoint_id")
    hub.corrupt_device(SWITCH, "no_device_id")
    async with running(Daemon(bridge_config(mosquitto, hub))) as daemon:
        listing = await probe.wait_for(lambda: probe.last.get("aqara/bridge/devices"))
        ids = {d["id"] for d in listing.json()}
        assert LIGHT not in ids
        assert SWITCH not in ids
        assert len(ids) == len(hub.devices) - 2
        assert daemon.backends[0].connected
        await marker(hub, probe)
        # a reconnect describes them again: still skipped, not logged again
        await hub.drop_connections()
        await logs.wait_for("studio hub connected", after=logs.lines.index(next(
            line for line in logs.lines if "studio hub connected" in line)) + 1, timeout=30)
        assert logs.count(LIGHT) == 1
        assert logs.count("describes a device unusably") == 2
        # healed on the hub: a resync brings it back
        hub.corrupt_device(LIGHT, None)
        start = len(probe.messages)
        await probe.publish("aqara/bridge/request/resync", "{}")
        await probe.next_on("aqara/bridge/response/resync", start, timeout=20)
        await probe.value("aqara/dining_light/availability", "online")


async def test_a_push_with_a_malformed_item_still_applies_the_good_ones(
        daemon: Daemon, hub: StudioSimulator, probe: MqttProbe) -> None:
    await probe.value(PLUG_ONOFF, "false")
    bad = {"deviceId": PLUG, "endpointId": "one", "functionCode": "Output",
           "traitCode": "OnOff", "value": False}
    good = {"deviceId": PLUG, "endpointId": 1, "functionCode": "Output", "traitCode": "OnOff",
            "value": True}
    hub.push_raw(json.dumps({"type": "TraitValueUpdate", "msgId": "push-x",
                             "data": [bad, "junk", {"deviceId": 7}, good]}))
    await probe.value(PLUG_ONOFF, "true")
    assert daemon.backends[0].connected


# ---- 3. deep JSON is refused with a clear answer; the hub session survives ---------------------


@pytest.mark.parametrize("payload", ["[" * 50_000 + "]" * 50_000,
                                     '{"a":' * 50_000 + "1" + "}" * 50_000])
async def test_a_deeply_nested_request_gets_a_clear_error(daemon: Daemon, probe: MqttProbe,
                                                          payload: str) -> None:
    start = len(probe.messages)
    await probe.publish("aqara/bridge/request/devices", payload,
                        response_topic="aqara/_replies/deep", correlation=b"deep-1")
    reply = await probe.next_on("aqara/_replies/deep", start)
    body = reply.json()
    assert body["status"] == "error"
    assert "nested deeper than" in body["error"]["message"]
    assert reply.correlation_data == b"deep-1"
    assert log_entries(probe, "nested deeper than")
    # the daemon is fine: an ordinary request is answered
    await probe.publish("aqara/bridge/request/devices", "{}", response_topic="aqara/_replies/ok")
    assert (await probe.next_on("aqara/_replies/ok", start)).json()["status"] == "ok"


async def test_a_huge_set_payload_is_refused(daemon: Daemon, hub: StudioSimulator,
                                             probe: MqttProbe) -> None:
    start = len(probe.messages)
    await probe.publish(f"{PLUG_ONOFF}/set", "1" * (1024 * 1024 + 1))
    entry = (await probe.next_on("aqara/bridge/log", start)).json()
    assert "larger than" in entry["message"]
    assert requests_of(hub, "ExecuteTraitRequest") == 0


async def test_a_nested_frame_from_the_hub_does_not_end_the_session(
        daemon: Daemon, hub: StudioSimulator, probe: MqttProbe) -> None:
    depth = 100_000
    hub.push_raw('{"type":"TraitValueUpdate","data":' * depth + "1" + "}" * depth)
    await marker(hub, probe)
    backend = daemon.backends[0]
    assert isinstance(backend, StudioBackend)
    assert backend.garbage_received == 1
    assert requests_of(hub, "SubscribeAllRequest") == 1  # still the first session


# ---- 4. publishes the broker refuses are reported ----------------------------------------------


FORBIDDEN = "replies/forbidden"


@pytest.fixture
async def acl_broker(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    """Mosquitto whose ACL lets anonymous clients use everything but :data:`FORBIDDEN`."""
    acl = tmp_path / "acl"
    acl.write_text(f"topic readwrite #\ntopic deny {FORBIDDEN}\n")
    user = "user root\n" if os.geteuid() == 0 else ""  # else it could not read the ACL file
    with running_mosquitto(f"acl_file {acl}\n{user}") as broker:
        yield broker


async def test_denied_publishes_are_reported_rate_limited_and_counted(
        acl_broker: Mosquitto, hub: StudioSimulator) -> None:
    # A requester names a response topic the bridge may not write: the broker answers the
    # bridge's publish with PUBACK 0x87 "Not authorized". (Mosquitto 2.0.11 then also drops the
    # connection, eclipse-mosquitto/mosquitto#2579: the bridge reconnects each time.)
    probe = await MqttProbe(acl_broker.port, ["aqara/#"]).start()
    try:
        async with running(Daemon(bridge_config(acl_broker, hub))) as daemon:
            await probe.wait_for(lambda: probe.last.get("aqara/bridge/devices"))
            def denied_in_info() -> int:
                info = probe.last.get("aqara/bridge/info")
                return int(info.json().get("mqtt", {}).get("denied_publishes", 0)) if info else 0

            # The hang-up can lose the PUBACK itself (the bridge has more in flight; the broker's
            # close then resets the connection): ask until three refusals were acknowledged.
            for _ in range(20):
                if daemon.mqtt.denied >= 3:
                    break
                await probe.value("aqara/bridge/state", "online", timeout=30)
                start = len(probe.messages)
                await probe.publish("aqara/bridge/request/health_check", "{}",
                                    response_topic=FORBIDDEN)
                await probe.next_on("aqara/bridge/state", start, timeout=30)  # the will
            assert daemon.mqtt.denied >= 3
            await probe.value("aqara/bridge/state", "online", timeout=30)
            await probe.wait_for(lambda: denied_in_info() == daemon.mqtt.denied, timeout=30)
            info = probe.last["aqara/bridge/info"]
            assert info.json()["mqtt"]["last_denied"] == {"topic": FORBIDDEN,
                                                          "reason": "Not authorized"}
            reports = log_entries(probe, "refused a publish")
            assert len(reports) == 1  # once a minute per topic
            assert FORBIDDEN in reports[0]["message"]
            assert "Not authorized" in reports[0]["message"]
    finally:
        probe.stop()


# ---- 5. storms: bounded work ---------------------------------------------------------------------


def publish_nowait(probe: MqttProbe, topic: str, payload: str, response_topic: str) -> None:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ResponseTopic = response_topic
    probe.client.publish(topic, payload, 1, False, props)


async def test_a_get_storm_costs_a_few_hub_reads_and_answers_every_request(
        daemon: Daemon, hub: StudioSimulator, probe: MqttProbe) -> None:
    storm = 2000
    hub.latency = 0.1
    before = requests_of(hub, "GetTraitValueRequest")
    for _ in range(storm):
        publish_nowait(probe, f"{PLUG_ONOFF}/get", "", "aqara/_replies/get")
    await probe.wait_for(lambda: len(probe.on("aqara/_replies/get")) >= storm, timeout=60)
    reads = requests_of(hub, "GetTraitValueRequest") - before
    assert 1 <= reads <= 100, reads
    assert all(m.json()["status"] == "ok" for m in probe.on("aqara/_replies/get"))


async def test_a_device_added_storm_costs_a_few_descriptions(
        daemon: Daemon, hub: StudioSimulator, probe: MqttProbe) -> None:
    hub.latency = 0.3  # the 1000 pushes are all read while the first description is asked
    before = requests_of(hub, "GetDevicesRequest")
    start = len(probe.messages)
    event = json.dumps({"type": "objectEvent", "msgId": "event-x", "data": {
        "eventType": "DEVICE_ADDED", "data": {"deviceId": PLUG}}})
    for _ in range(1000):
        hub.push_raw(event)

    def updates() -> list[dict[str, Any]]:
        events = [m.json() for m in probe.messages[start:] if m.topic == "aqara/bridge/event"]
        return [e for e in events if e["type"] == "device_updated"]

    # one description, and one more for everything that arrived meanwhile
    await probe.wait_for(lambda: len(updates()) >= 2, timeout=30)
    hub.latency = 0.0
    await marker(hub, probe)
    described = requests_of(hub, "GetDevicesRequest") - before
    assert 2 <= described <= 3, described


async def test_garbage_frames_are_counted_and_warned_about_once(
        daemon: Daemon, hub: StudioSimulator, probe: MqttProbe, logs: LogWatch) -> None:
    for n in range(300):
        hub.push_raw(f"not json {n} {{")
    await marker(hub, probe)
    backend = daemon.backends[0]
    assert isinstance(backend, StudioBackend)
    assert backend.garbage_received == 300
    assert logs.count("unparsable message") == 1


async def test_an_absurd_value_from_the_hub_is_refused_with_a_reason(
        daemon: Daemon, hub: StudioSimulator, probe: MqttProbe, logs: LogWatch) -> None:
    original = await probe.value(FIRMWARE)
    hub.set_value(PLUG, 0, "BasicInformation", "FirmwareRevision", "x" * (10 * 1024 * 1024))
    await marker(hub, probe)
    await synced(probe)
    assert probe.last[FIRMWARE].text == original
    assert all(len(m.payload) < 1024 * 1024 for m in probe.messages)
    assert logs.count("too large") == 1
    assert daemon.bridge.values_refused == 1


@pytest.mark.parametrize("max_buffered", [20, 1])
async def test_a_push_storm_during_the_snapshot_overflows_and_still_converges(
        mosquitto: Mosquitto, hub: StudioSimulator, probe: MqttProbe, logs: LogWatch,
        max_buffered: int) -> None:
    """With a buffer of 1 every bounded attempt overflows: the last one keeps each trait's
    latest push, so the bridge still converges (it used to go on without them)."""
    hub.latency = 0.2  # the snapshot takes a while: pushes pile up meanwhile
    hub.start_random_changes(500, seed=12)
    config = bridge_config(mosquitto, hub)
    spec = config.backends[0]
    assert isinstance(spec, StudioBackendConfig)
    backend = StudioBackend(spec.name, spec.ws_url, TOKEN, request_timeout=10,
                            max_buffered=max_buffered)
    async with running(Daemon(config, backends=[backend])) as daemon:
        await logs.wait_for("too many pushes during the snapshot", timeout=30)
        await probe.wait_for(lambda: probe.last.get("aqara/bridge/devices"), timeout=30)
        hub.stop_random_changes()
        hub.latency = 0.0
        await marker(hub, probe)
        assert backend.buffer_overflows >= 1
        assert requests_of(hub, "GetAllDeviceInfoRequest") >= 2  # the snapshot was taken again
        if max_buffered == 1:
            assert backend.buffer_overflows == SNAPSHOT_RETRIES
        # converged: every value the bridge holds is the hub's
        for device in hub.devices:
            entry = daemon.bridge.devices[device.device_id]
            for endpoint, function, trait in device.iter_traits():
                held = entry.device.trait(endpoint, function, trait.code)
                if not trait.readable and not trait.writable:
                    assert held is None  # a push-only event (a button press) is never state
                    continue
                assert held is not None
                if trait.readable and trait.subscribable:
                    assert held.value == trait.value, (device.device_id, trait.code)


# ---- broker killed and restarted, with persistence -------------------------------------------


def saved(db: Path, after: float) -> bool:
    """Whether Mosquitto's autosave wrote its database after ``after``, waiting up to 15 s
    (a file has no event to await: polled, in a thread)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if db.exists() and db.stat().st_mtime > after:
            return True
        time.sleep(0.05)
    return False


async def test_a_killed_persistent_broker_converges_with_nothing_stale(
        tmp_path: Path, hub: StudioSimulator) -> None:
    user = "user root\n" if os.geteuid() == 0 else ""
    extra = f"persistence true\npersistence_location {tmp_path}/\nautosave_interval 1\n{user}"
    with running_mosquitto(extra) as broker:
        probe = await MqttProbe(broker.port, ["aqara/#"]).start()
        async with running(Daemon(bridge_config(broker, hub))):
            await probe.wait_for(lambda: probe.last.get("aqara/bridge/devices"))
            await probe.value(f"aqara/{SWITCH}/2/Output/OnOff")
            probe.stop()
            assert await asyncio.to_thread(saved, tmp_path / "mosquitto.db", time.time())
            assert broker.process is not None
            broker.process.kill()  # no goodbye, no final save
            broker.process.wait()
            broker.process = None
            hub.set_value(PLUG, 1, "EnergyManagement", "CurrentPower", 55.5)  # while it is down
            hub.remove_device(SWITCH)
            broker.start()
            fresh = await MqttProbe(broker.port, ["aqara/#"]).start()
            try:
                await fresh.value("aqara/kitchen_plug/1/EnergyManagement/CurrentPower", "55.5",
                                  timeout=30)
                await fresh.value(f"aqara/{SWITCH}/2/Output/OnOff", "", timeout=30)
                await synced(fresh)
                stale = [t for t, m in fresh.last.items()
                         if t.startswith(f"aqara/{SWITCH}") and m.payload]
                assert stale == []
                assert fresh.last["aqara/bridge/state"].text == "online"
            finally:
                fresh.stop()


# ---- fuzzed /set and requests --------------------------------------------------------------------


async def test_fuzzed_commands_crash_nothing_and_reach_the_hub_only_when_valid(
        daemon: Daemon, hub: StudioSimulator, probe: MqttProbe, logs: LogWatch) -> None:
    names = {e.device.id: e.topic_name for e in daemon.bridge.devices.values()}
    stream = commands(hub.devices, names, seed=20261130)
    for _ in range(1500):
        topic, payload = next(stream)
        probe.client.publish(topic, payload, 1)
    # the bridge reads in order: once this is answered, every fuzzed message was handled
    start = len(probe.messages)
    await probe.publish("aqara/bridge/request/health_check", "{}",
                        response_topic="aqara/_replies/barrier")
    assert (await probe.next_on("aqara/_replies/barrier", start, timeout=60)
            ).json()["status"] == "ok"
    await probe.publish(f"{PLUG_ONOFF}/set", "toggle", response_topic="aqara/_replies/last")
    await probe.next_on("aqara/_replies/last", start, timeout=30)
    for request in (m for m in hub.received if m.get("type") == "ExecuteTraitRequest"):
        for item in request["data"]:
            key = (item["deviceId"], item["endpointId"], item["functionCode"], item["traitCode"])
            trait = next(t for ep, fn, t in hub.get_device(key[0]).iter_traits()
                         if (ep, fn, t.code) == key[1:])
            assert trait.writable, key
            assert check_value(trait, item["value"])[0], (key, item["value"])
    for crash in ("error handling mqtt message", "hub call crashed", "error in mqtt network"):
        assert logs.count(crash) == 0, crash
    assert daemon.mqtt.connected
