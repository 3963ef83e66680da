"""A restart publishes only what differs from what the broker retains (issue 24, item 2)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge.app import Daemon
from bridge.outputs import topic_tree
from bridge.simulators.studio import StudioSimulator
from tests.integration.conftest import LIGHT, OFFLINE, PLUG, bridge_config, running, settled
from tests.logwatch import LogWatch
from tests.mosquitto import Mosquitto, running_mosquitto
from tests.mqtt_probe import MqttProbe, Received, eventually, synced

PLUG_ONOFF = "aqara/kitchen_plug/1/Output/OnOff"


def device_topics(messages: list[Received]) -> list[str]:
    """The trait, document and availability topics among ``messages`` (not bridge/*)."""
    return [m.topic for m in messages
            if not m.topic.startswith(("aqara/bridge/", "aqara/_sync/"))]


async def retained(mosquitto: Mosquitto) -> dict[str, tuple[bytes, str | None]]:
    """What a fresh subscriber gets retained under ``aqara/#`` but ``bridge/*``."""
    fresh = await MqttProbe(mosquitto.port, ["aqara/#"]).start()
    try:
        await synced(fresh)
        return {m.topic: (m.payload, m.content_type) for m in fresh.messages
                if m.retain and m.topic in device_topics([m])}
    finally:
        fresh.stop()


async def run_once(mosquitto: Mosquitto, hub: StudioSimulator, probe: MqttProbe) -> list[str]:
    """Run the bridge until it settled; the device topics ``probe`` got meanwhile."""
    start = len(probe.messages)
    async with running(Daemon(bridge_config(mosquitto, hub))) as daemon:
        await settled(daemon)
        await synced(probe)
    return device_topics(probe.messages[start:])


async def test_an_unchanged_restart_publishes_no_device_topic(
        mosquitto: Mosquitto, hub: StudioSimulator, probe: MqttProbe) -> None:
    first = await run_once(mosquitto, hub, probe)
    assert len([t for t in first if t.count("/") == 4]) > 100  # trait topics
    before = await retained(mosquitto)
    assert before[f"aqara/{OFFLINE}/availability"][0] == b"offline"
    # the probe stays subscribed across the restart: it would see every republished message
    assert await run_once(mosquitto, hub, probe) == []
    assert await retained(mosquitto) == before


async def test_only_what_changed_while_the_bridge_was_down_is_published(
        mosquitto: Mosquitto, hub: StudioSimulator, probe: MqttProbe) -> None:
    await run_once(mosquitto, hub, probe)
    was_on = hub.get_value(PLUG, 1, "Output", "OnOff")
    hub.set_value(PLUG, 1, "Output", "OnOff", not was_on)
    hub.set_online(LIGHT, False)
    second = await run_once(mosquitto, hub, probe)
    # the plug's trait and document; the light's availability, document and Reachable trait
    assert sorted(second) == sorted([
        PLUG_ONOFF, "aqara/kitchen_plug", "aqara/dining_light/availability",
        "aqara/dining_light", "aqara/dining_light/0/BasicInformation/Reachable"])
    assert probe.last[PLUG_ONOFF].text == ("false" if was_on else "true")
    assert probe.last["aqara/dining_light/availability"].text == "offline"


async def test_a_value_changed_while_learning_is_published_once(
        mosquitto: Mosquitto, hub: StudioSimulator, probe: MqttProbe) -> None:
    await run_once(mosquitto, hub, probe)
    was_on = hub.get_value(PLUG, 1, "Output", "OnOff")
    start = len(probe.messages)
    async with running(Daemon(bridge_config(mosquitto, hub))) as daemon:
        await eventually(lambda: daemon.topic_tree.syncing and daemon.bridge.devices)
        hub.set_value(PLUG, 1, "Output", "OnOff", not was_on)  # before the marker is back
        await eventually(lambda: daemon.topic_tree.unchanged)
        await settled(daemon)
        await synced(probe)
    assert device_topics(probe.messages[start:]).count(PLUG_ONOFF) == 1
    assert probe.last[PLUG_ONOFF].text == ("false" if was_on else "true")


@pytest.fixture
def no_marker_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """Mosquitto that takes the topic tree's learning marker but never delivers it (a denied
    publish would make it drop the connection): the marker is the only topic of four levels
    under ``aqara/`` the bridge subscribes to, and those are writable only."""
    acl = tmp_path / "acl"
    readable = ["aqara/+", "aqara/+/+", "aqara/+/+/+/+", "aqara/+/+/+/+/+",
                "aqara/+/+/+/+/+/+", "homeassistant/#",
                *(f"aqara/bridge/{own}/#" for own in ("instance_sync", "stale_sync",
                                                      "discovery_sync", "response"))]
    acl.write_text("".join(f"topic readwrite {t}\n" for t in readable)
                   + "topic write aqara/bridge/topics_sync/#\n")
    user = "user root\n" if os.geteuid() == 0 else ""  # else it could not read the ACL file
    with running_mosquitto(f"acl_file {acl}\n{user}") as broker:
        yield broker


async def test_a_marker_that_never_comes_back_delays_but_does_not_stop_publishing(
        no_marker_broker: Mosquitto, hub: StudioSimulator, monkeypatch: pytest.MonkeyPatch,
        logs: LogWatch) -> None:
    monkeypatch.setattr(topic_tree, "LEARN_DEADLINE", 1.0)
    probe = await MqttProbe(no_marker_broker.port, ["aqara/#"]).start()
    try:
        await run_once(no_marker_broker, hub, probe)
        hub.set_value(PLUG, 1, "Output", "OnOff", not hub.get_value(PLUG, 1, "Output", "OnOff"))
        start = len(probe.messages)
        async with running(Daemon(bridge_config(no_marker_broker, hub))) as daemon:
            await settled(daemon)
            await synced(probe)
        assert logs.count("did not finish the retained-topics round in time") == 1
        # what had arrived by the deadline (everything but the marker) was compared all the same
        assert sorted(device_topics(probe.messages[start:])) == [
            "aqara/kitchen_plug", PLUG_ONOFF]
    finally:
        probe.stop()


async def test_a_topic_retained_with_another_content_type_is_published_again(
        mosquitto: Mosquitto, hub: StudioSimulator, probe: MqttProbe) -> None:
    await run_once(mosquitto, hub, probe)
    topic = "aqara/kitchen_plug/0/BasicInformation/FirmwareRevision"
    payload, content_type = (await retained(mosquitto))[topic]
    old = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    old.ContentType = "text/x-older-bridge"
    info = probe.client.publish(topic, payload, 1, True, old)
    info.wait_for_publish(5)
    assert (await retained(mosquitto))[topic] == (payload, "text/x-older-bridge")
    assert await run_once(mosquitto, hub, probe) == [topic]
    assert (await retained(mosquitto))[topic] == (payload, content_type)


async def test_a_restart_with_the_hub_down_says_offline_for_every_device(
        mosquitto: Mosquitto, hub: StudioSimulator, probe: MqttProbe) -> None:
    """A retained ``online`` from the last run must not outlive a hub that died meanwhile."""
    await run_once(mosquitto, hub, probe)
    assert (await retained(mosquitto))["aqara/kitchen_plug/availability"][0] == b"online"
    config = bridge_config(mosquitto, hub)
    await hub.stop()  # its port is closed now: the restarted bridge cannot reach it
    async with running(Daemon(config)):
        await probe.value("aqara/kitchen_plug/availability", "offline")
        await probe.value("aqara/dining_light/availability", "offline")
        await synced(probe)
    states = {topic: payload for topic, (payload, _) in (await retained(mosquitto)).items()
              if topic.endswith("/availability")}
    assert len(states) > 20
    assert set(states.values()) == {b"offline"}
