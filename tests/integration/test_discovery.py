"""Home Assistant discovery through a real Mosquitto: counts, diffs, removal, round trips."""

from __future__ import annotations

import json
from typing import Any

from bridge.app import Daemon
from bridge.config import parse_config
from bridge.simulators.sample_home import sample_home, synthetic_devices
from bridge.simulators.studio import StudioSimulator
from tests.integration.conftest import LIGHT, PLUG, TOKEN, bridge_config, running
from tests.mosquitto import Mosquitto, free_port
from tests.mqtt_probe import MqttProbe, eventually, synced

PREFIX = "homeassistant"


def configs(probe: MqttProbe, start: int = 0) -> list[tuple[str, bytes]]:
    """Discovery messages the probe received since index ``start``."""
    return [(m.topic, m.payload) for m in probe.messages[start:]
            if m.topic.startswith(PREFIX + "/") and m.topic.endswith("/config")]


async def settled(probe: MqttProbe, daemon: Daemon) -> None:
    """Wait until the bridge finished reconciling discovery and the broker delivered it all."""
    discovery = daemon.discovery
    assert discovery is not None
    await probe.wait_for(lambda: daemon.bridge.devices and discovery.in_step
                         and len(discovery.published) == len(daemon.bridge.devices), 30)
    sent = discovery.messages_sent
    await probe.wait_for(lambda: len(configs(probe)) >= sent, 30)
    await synced(probe, PREFIX)  # a marker under the prefix that is not a config topic


def device_config(probe: MqttProbe, device_id: str) -> dict[str, Any]:
    object_id = "aqara_mqtt_" + device_id.replace(".", "_")
    document: dict[str, Any] = probe.last[f"{PREFIX}/device/{object_id}/config"].json()
    return document


async def test_sample_home_then_restart_sends_almost_nothing(
        mosquitto: Mosquitto, hub: StudioSimulator, probe: MqttProbe) -> None:
    probe_all = await MqttProbe(mosquitto.port, [f"{PREFIX}/#", "aqara/#"]).start()
    try:
        async with running(Daemon(bridge_config(mosquitto, hub))) as first:
            await settled(probe_all, first)
            at_start = configs(probe_all)
        assert len(at_start) == len(sample_home())  # one device-based message per device
        for topic, payload in at_start:
            document = json.loads(payload)
            assert {"dev", "o", "cmps", "avty", "avty_mode"} <= set(document), topic
            assert document["avty_mode"] == "all"
        start = len(probe_all.messages)
        async with running(Daemon(bridge_config(mosquitto, hub))) as second:
            await settled(probe_all, second)
            assert configs(probe_all, start) == []
            assert second.discovery is not None
            assert second.discovery.messages_sent == 0
    finally:
        probe_all.stop()


async def test_thousand_devices_counted(mosquitto: Mosquitto) -> None:
    hub = StudioSimulator(TOKEN, synthetic_devices(1000, seed=3))
    await hub.start()
    probe = await MqttProbe(mosquitto.port, [f"{PREFIX}/#", "aqara/bridge/#"]).start()
    try:
        async with running(Daemon(bridge_config(mosquitto, hub))) as first:
            await settled(probe, first)
            assert first.discovery is not None
            sent_first = first.discovery.messages_sent
        assert 950 <= sent_first <= 1000  # devices without any entity send nothing
        async with running(Daemon(bridge_config(mosquitto, hub))) as second:
            await settled(probe, second)
            assert second.discovery is not None
            assert second.discovery.messages_sent == 0
    finally:
        probe.stop()
        await hub.stop()


async def test_removed_device_configs_are_cleared(mosquitto: Mosquitto, hub: StudioSimulator,
                                                  probe: MqttProbe) -> None:
    ha = await MqttProbe(mosquitto.port, [f"{PREFIX}/#"]).start()
    try:
        async with running(Daemon(bridge_config(mosquitto, hub))) as daemon:
            await settled(ha, daemon)
            object_id = "aqara_mqtt_" + PLUG.replace(".", "_")
            topic = f"{PREFIX}/device/{object_id}/config"
            assert ha.last[topic].payload
            hub.remove_device(PLUG)
            assert await ha.value(topic, "") == ""
        # a device removed while the bridge was down is cleared at the next start too
        hub.remove_device(LIGHT)
        light_topic = f"{PREFIX}/device/aqara_mqtt_{LIGHT.replace('.', '_')}/config"
        async with running(Daemon(bridge_config(mosquitto, hub))):
            assert await ha.value(light_topic, "") == ""
    finally:
        ha.stop()


def retained_configs(probe: MqttProbe) -> dict[str, bytes]:
    return {t: m.payload for t, m in probe.last.items()
            if t.startswith(PREFIX + "/") and t.endswith("/config") and m.payload}


async def test_unreachable_hub_at_start_keeps_every_entity(
        mosquitto: Mosquitto, hub: StudioSimulator, probe: MqttProbe) -> None:
    """MQTT up before the hub answers (or a hub that is down) must not clear any config."""
    ha = await MqttProbe(mosquitto.port, [f"{PREFIX}/#", "aqara/#"]).start()
    try:
        async with running(Daemon(bridge_config(mosquitto, hub))) as first:
            await settled(ha, first)
        before = retained_configs(ha)
        assert len(before) == len(sample_home())
        closed = f"ws://127.0.0.1:{free_port()}"
        async with running(Daemon(bridge_config(mosquitto, closed))) as second:
            discovery = second.discovery
            assert discovery is not None
            await eventually(lambda: discovery.in_step)
            await synced(ha, PREFIX)  # whatever it published has arrived by now
            assert discovery.messages_sent == 0
            assert retained_configs(ha) == before
            assert len(discovery.orphans) == len(before)
        # Home Assistant restarting now still finds every config retained
        fresh = await MqttProbe(mosquitto.port, [f"{PREFIX}/#"]).start()
        try:
            await synced(fresh, PREFIX)
            assert retained_configs(fresh) == before
        finally:
            fresh.stop()
        # the hub answering later adopts the retained configs: nothing to send
        async with running(Daemon(bridge_config(mosquitto, hub))) as third:
            await settled(ha, third)
            assert third.discovery is not None
            assert third.discovery.messages_sent == 0
            assert retained_configs(ha) == before
    finally:
        ha.stop()


def layout_config(mosquitto: Mosquitto, hub: StudioSimulator, device_based: bool) -> Daemon:
    daemon = Daemon(bridge_config(
        mosquitto, hub, extra=f"homeassistant: {{device_based: {str(device_based).lower()}}}"))
    assert daemon.discovery is not None
    daemon.discovery.migration_step = 0.3
    return daemon


async def test_device_based_switch_migrates_in_both_directions(
        mosquitto: Mosquitto, hub: StudioSimulator, probe: MqttProbe) -> None:
    """Home Assistant's documented order: migrate payload on the old topics, the new configs,
    then the old topics cleared; never the new configs first."""
    ha = await MqttProbe(mosquitto.port, [f"{PREFIX}/#", "aqara/#"]).start()
    object_id = "aqara_mqtt_" + PLUG.replace(".", "_")
    device_topic = f"{PREFIX}/device/{object_id}/config"

    def is_entity(topic: str) -> bool:
        return f"/{object_id}/" in topic and topic != device_topic

    try:
        async with running(layout_config(mosquitto, hub, True)) as first:
            await settled(ha, first)
        unique_ids = {c["uniq_id"] for c in device_config(ha, PLUG)["cmps"].values()}
        for device_based, old, new in ((False, lambda t: t == device_topic, is_entity),
                                       (True, is_entity, lambda t: t == device_topic)):
            start = len(ha.messages)
            async with running(layout_config(mosquitto, hub, device_based)):
                def migrated(start: int = start, old: Any = old) -> bool:
                    return any(m.topic.endswith("/config") and old(m.topic) and not m.payload
                               for m in ha.messages[start:])

                await ha.wait_for(migrated, 30)
            seen = [(m.topic, m.payload) for m in ha.messages[start:]
                    if m.topic.startswith(PREFIX + "/") and (old(m.topic) or new(m.topic))]
            kinds = ["migrate" if p == b'{"migrate_discovery":true}' else
                     "clear" if not p else "config" for _, p in seen]
            olds = [k for (t, _), k in zip(seen, kinds, strict=True) if old(t)]
            news = [k for (t, _), k in zip(seen, kinds, strict=True) if new(t)]
            assert set(olds) == {"migrate", "clear"}
            assert "config" not in olds
            assert set(news) == {"config"}
            first_new = kinds.index("config")
            assert "migrate" in kinds[:first_new]
            assert "clear" not in kinds[:first_new]
            assert kinds.index("clear") > len(kinds) - 1 - kinds[::-1].index("config")
            # the same entities (unique ids) in the new layout, nothing retained in the old one
            documents = [json.loads(ha.last[t].payload) for t in ha.last
                         if new(t) and ha.last[t].payload]
            ids = {c["uniq_id"] for d in documents
                   for c in (d["cmps"].values() if "cmps" in d else [d])}
            assert ids == unique_ids
            assert not [t for t in ha.last if old(t) and ha.last[t].payload]
    finally:
        ha.stop()


async def test_home_assistant_birth_reannounces(mosquitto: Mosquitto, hub: StudioSimulator,
                                                probe: MqttProbe) -> None:
    ha = await MqttProbe(mosquitto.port, [f"{PREFIX}/#"]).start()
    try:
        async with running(Daemon(bridge_config(mosquitto, hub))) as daemon:
            await settled(ha, daemon)
            start = len(ha.messages)
            await ha.publish(f"{PREFIX}/status", "online")
            await ha.wait_for(lambda: len(configs(ha, start)) >= len(sample_home()), 15)
    finally:
        ha.stop()


async def test_switch_command_round_trip(mosquitto: Mosquitto, hub: StudioSimulator,
                                         probe: MqttProbe) -> None:
    ha = await MqttProbe(mosquitto.port, [f"{PREFIX}/#", "aqara/#"]).start()
    try:
        async with running(Daemon(bridge_config(mosquitto, hub))) as daemon:
            await settled(ha, daemon)
            document = device_config(ha, PLUG)
            (switch,) = [c for c in document["cmps"].values()
                         if c["p"] == "switch" and "Output" in c["cmd_t"]]
            assert hub.get_value(PLUG, 1, "Output", "OnOff") is False
            await ha.publish(switch["cmd_t"], switch["pl_on"])  # what Home Assistant sends
            assert await ha.value(switch["stat_t"], switch.get("stat_on", switch["pl_on"]))
            assert hub.get_value(PLUG, 1, "Output", "OnOff") is True

            light = device_config(ha, LIGHT)
            (lamp,) = [c for c in light["cmps"].values() if c["p"] == "light"]
            await ha.publish(lamp["bri_cmd_t"], "25")
            await ha.value(lamp["bri_stat_t"], "25")
            assert hub.get_value(LIGHT, 1, "LevelControl", "CurrentLevel") == 25
    finally:
        ha.stop()


async def test_rename_moves_the_entities_topics(mosquitto: Mosquitto, hub: StudioSimulator,
                                                probe: MqttProbe) -> None:
    ha = await MqttProbe(mosquitto.port, [f"{PREFIX}/#"]).start()
    try:
        async with running(Daemon(bridge_config(mosquitto, hub))) as daemon:
            await settled(ha, daemon)
            entry = daemon.bridge.find_device(PLUG)
            assert entry is not None
            unique_ids = {c["uniq_id"] for c in device_config(ha, PLUG)["cmps"].values()}
            daemon.bridge.rename(entry, "kettle")

            def moved() -> bool:
                cmps = device_config(ha, PLUG)["cmps"].values()
                return all(c["stat_t"].startswith("aqara/kettle/") for c in cmps if "stat_t" in c)

            await ha.wait_for(moved)
            # unique ids come from the hub's device id: Home Assistant keeps the entities
            assert {c["uniq_id"] for c in device_config(ha, PLUG)["cmps"].values()} == unique_ids
    finally:
        ha.stop()


async def test_per_entity_mode_and_exclusion(mosquitto: Mosquitto, hub: StudioSimulator,
                                             probe: MqttProbe) -> None:
    ha = await MqttProbe(mosquitto.port, [f"{PREFIX}/#"]).start()
    config = parse_config(f"""
mqtt: {{url: "{mosquitto.url}"}}
backends: [{{type: studio, name: home, url: "{hub.url}", token: "{TOKEN}"}}]
homeassistant: {{device_based: false}}
devices:
  {LIGHT}: {{homeassistant: false}}
""", "test.yaml")
    try:
        async with running(Daemon(config)) as daemon:
            await settled(ha, daemon)
            topics = [t for t, _ in configs(ha)]
            assert not any("/device/" in t for t in topics)
            plug = [t for t in topics if "_" + PLUG.replace(".", "_") + "/" in t]
            assert f"{PREFIX}/switch/aqara_mqtt_{PLUG.replace('.', '_')}" in " ".join(plug)
            assert len(plug) > 3  # one message per entity
            assert not [t for t in topics if LIGHT.replace(".", "_") in t]
            document = json.loads(ha.last[plug[0]].payload)
            assert "dev" in document
            assert "uniq_id" in document
    finally:
        ha.stop()
