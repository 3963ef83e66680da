"""Home Assistant discovery through a real Mosquitto: counts, diffs, removal, round trips."""

from __future__ import annotations

import json
from typing import Any

import jinja2

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


# ---- the Connectivity sensor, evaluated the way Home Assistant does ----------------------------

SHARED_OPTIONS = ("avty", "avty_mode", "avty_t", "avty_tpl", "pl_avail", "pl_not_avail",
                  "stat_t", "cmd_t")
"""The device-level options Home Assistant merges into each component that does not set them
(``SHARED_OPTIONS`` in its MQTT discovery, 2026.2)."""

REACHABLE = "ep0_basic_information_reachable"


def binary_sensor_state(probe: MqttProbe, document: dict[str, Any], key: str) -> str:
    """What Home Assistant shows for a device-based binary_sensor component, from the
    retained messages: ``unavailable`` unless every availability topic (mode ``all``) last
    said its available payload (a topic that never spoke counts as not available), else
    ``on``/``off`` by ``pl_on``/``pl_off``, ``unknown`` without a state."""
    config = {**{k: document[k] for k in SHARED_OPTIONS if k in document},
              **document["cmps"][key]}
    assert config["p"] == "binary_sensor"
    assert config.get("avty_mode") == "all"
    assert not {"val_tpl", "avty_t", "avty_tpl"} & set(config)  # not modelled here
    for item in config["avty"]:
        assert set(item) == {"t"}  # default payloads: online / offline
        message = probe.last.get(item["t"])
        if message is None or message.text != "online":
            return "unavailable"
    state = probe.last.get(config["stat_t"])
    if state is None:
        return "unknown"
    return {config["pl_on"]: "on", config["pl_off"]: "off"}.get(state.text, "unknown")


def connectivity(probe: MqttProbe, device_ids: list[str]) -> dict[str, str]:
    return {d: binary_sensor_state(probe, device_config(probe, d), REACHABLE)
            for d in device_ids}


def hub_config(mosquitto: Mosquitto, hub: StudioSimulator) -> Daemon:
    return Daemon(parse_config(f"""
mqtt: {{url: "{mosquitto.url}"}}
backends: [{{type: studio, name: home, url: "{hub.url}", token: "{TOKEN}",
             reconnect_max_delay: 0.5}}]
devices:
  {PLUG}: {{name: kitchen_plug}}
""", "test.yaml"))


async def test_connectivity_tells_the_truth_for_each_cause(mosquitto: Mosquitto) -> None:
    """Device unreachable: off; hub down: off (its retained Reachable still says true), also
    after a bridge restart; bridge down: unavailable; everything back: on."""
    hub = StudioSimulator(TOKEN, sample_home(), port=free_port())
    await hub.start()
    ha = await MqttProbe(mosquitto.port, [f"{PREFIX}/#", "aqara/#"]).start()
    devices = [d.device_id for d in sample_home()
               if any(t.code == "Reachable" for e in d.endpoints for f in e.functions
                      for t in f.traits)]
    assert len(devices) > 20
    online = {d.device_id: "on" if d.online else "off" for d in sample_home()}
    expected_up = {d: online[d] for d in devices}
    assert "off" in expected_up.values()  # the sample home's offline sensor
    plug_level = "kitchen_plug"

    def plug_other_state() -> str:  # any other entity of the plug, for comparison
        document = device_config(ha, PLUG)
        (key,) = [k for k, c in document["cmps"].items() if c["p"] == "switch"]
        config = {**document, **document["cmps"][key]}
        return "unavailable" if any(ha.last[a["t"]].text != "online"
                                    for a in config["avty"]) else "available"

    try:
        async with running(hub_config(mosquitto, hub)) as daemon:
            await settled(ha, daemon)
            await ha.wait_for(lambda: connectivity(ha, devices) == expected_up)

            hub.set_online(PLUG, False)  # the device is unreachable
            await ha.value(f"aqara/{plug_level}/availability", "offline")
            assert connectivity(ha, devices) == {**expected_up, PLUG: "off"}
            hub.set_online(PLUG, True)
            await ha.wait_for(lambda: connectivity(ha, devices) == expected_up)

            await hub.stop()  # the hub is down
            await ha.wait_for(lambda: set(connectivity(ha, devices).values()) == {"off"})
            reachable = f"aqara/{plug_level}/0/BasicInformation/Reachable"
            assert ha.last[reachable].text == "true"  # stale: what the sensor used to show
            assert plug_other_state() == "unavailable"
        # the bridge is down: nobody can tell
        await ha.value("aqara/bridge/state", "offline")
        assert set(connectivity(ha, devices).values()) == {"unavailable"}

        async with running(hub_config(mosquitto, hub)) as daemon:
            await ha.value("aqara/bridge/state", "online")  # a restart, with the hub still down
            await synced(ha)
            assert set(connectivity(ha, devices).values()) == {"off"}
            await hub.start()  # the hub is back, on the same port
            await ha.wait_for(lambda: connectivity(ha, devices) == expected_up, 30)
            assert plug_other_state() == "available"
    finally:
        ha.stop()
        await hub.stop()


async def test_the_hub_is_announced_before_the_devices_that_name_it(
        mosquitto: Mosquitto) -> None:
    """A hub the hub's device list names last (here: added last): Home Assistant must still
    see the hub's own config (with its area) before a via_device names it."""
    home = sample_home()
    (gateway,) = [d for d in home if "gateway" in d.model]
    gateway.create_time = max(d.create_time for d in home) + 1
    hub = StudioSimulator(TOKEN, home)
    await hub.start()
    ha = await MqttProbe(mosquitto.port, [f"{PREFIX}/#", "aqara/#"]).start()
    try:
        async with running(Daemon(bridge_config(mosquitto, hub))) as daemon:
            await settled(ha, daemon)
        hub_id = "aqara_mqtt_lumi1_54ef44100000"
        order = [json.loads(payload)["dev"] for _, payload in configs(ha) if payload]
        first_hub = next(i for i, dev in enumerate(order) if dev["ids"] == [hub_id])
        naming = [i for i, dev in enumerate(order) if dev.get("via_device") == hub_id]
        assert len(naming) >= len(home) - 1
        assert first_hub < min(naming)
    finally:
        ha.stop()
        await hub.stop()


async def test_off_grid_values_from_home_assistant_are_rounded_not_dropped(
        mosquitto: Mosquitto, hub: StudioSimulator, probe: MqttProbe) -> None:
    """What Home Assistant publishes for 21.3 °C on a 0.5 °C thermostat reaches the hub as
    21.5 through the entity's command template; the bridge's /set stays strict for others."""
    thermostat = "lumi1.54ef448cc210"
    ha = await MqttProbe(mosquitto.port, [f"{PREFIX}/#", "aqara/#"]).start()
    try:
        async with running(Daemon(bridge_config(mosquitto, hub))) as daemon:
            await settled(ha, daemon)
            (climate,) = [c for c in device_config(ha, thermostat)["cmps"].values()
                          if c["p"] == "climate"]
            payload = jinja2.Environment().from_string(climate["temp_cmd_tpl"]).render(
                value=21.3)
            await ha.publish(climate["temp_cmd_t"], payload)
            assert await ha.value(climate["temp_stat_t"], "21.5")
            assert hub.get_value(thermostat, 1, "Thermostat", "SetTemperature") == 21.5
            start = len(ha.messages)
            await ha.publish(climate["temp_cmd_t"], "21.3")  # another client: rejected
            line = await ha.next_on("aqara/bridge/log", start)
            assert "not on the step" in line.json()["message"]
            assert hub.get_value(thermostat, 1, "Thermostat", "SetTemperature") == 21.5
    finally:
        ha.stop()
