"""Retained topics of devices that no longer exist are cleared, but only on a backend's word."""

from __future__ import annotations

from bridge.app import Daemon
from bridge.config import Config, parse_config
from bridge.simulators.studio import StudioSimulator
from tests.integration.conftest import LIGHT, TOKEN, bridge_config, running
from tests.mosquitto import Mosquitto, free_port
from tests.mqtt_probe import MqttProbe, eventually, synced


def renamed(mosquitto: Mosquitto, hub_url: str, extra: str = "") -> Config:
    """The light renamed from dining_light to dining_lamp in the config."""
    return parse_config(f"""
mqtt: {{url: "{mosquitto.url}"}}
backends: [{{type: studio, name: home, url: "{hub_url}", token: "{TOKEN}", request_timeout: 5}}]
devices:
  {LIGHT}: {{name: dining_lamp}}
{extra}
""", "renamed.yaml")


async def retained_under(mosquitto: Mosquitto, topic_filter: str) -> dict[str, bytes]:
    """What a fresh subscriber gets retained under ``topic_filter``."""
    fresh = await MqttProbe(mosquitto.port, [topic_filter, "aqara/_sync/#"]).start()
    try:
        await synced(fresh)
        return {m.topic: m.payload for m in fresh.messages if m.retain and m.payload}
    finally:
        fresh.stop()


async def first_run(mosquitto: Mosquitto, hub: StudioSimulator, probe: MqttProbe) -> None:
    async with running(Daemon(bridge_config(mosquitto, hub))):
        await probe.value("aqara/dining_light/availability", "online")
        await probe.value("aqara/dining_light/1/Output/OnOff")


async def test_renamed_device_leaves_nothing_behind(mosquitto: Mosquitto, hub: StudioSimulator,
                                                    probe: MqttProbe) -> None:
    await first_run(mosquitto, hub, probe)
    assert len(await retained_under(mosquitto, "aqara/dining_light/#")) > 5
    # a retained command someone left behind is cleared too, and never executed
    await probe.publish("aqara/dining_lamp/1/Output/OnOff/set", "ON", retain=True)
    async with running(Daemon(renamed(mosquitto, hub.url))) as daemon:
        await probe.value("aqara/dining_lamp/availability", "online")
        assert daemon.topic_tree.stale is not None
        stale = daemon.topic_tree.stale
        await eventually(lambda: stale.cleared > 5)
        await probe.value("aqara/dining_light/availability", "")
        assert await retained_under(mosquitto, "aqara/dining_light/#") == {}
        await probe.value("aqara/dining_lamp/1/Output/OnOff/set", "")
        assert not [m for m in hub.received if m.get("type") == "ExecuteTraitRequest"]
        assert await retained_under(mosquitto, "aqara/dining_lamp/1/Output/OnOff")


async def test_nothing_is_cleared_while_the_hub_is_down(mosquitto: Mosquitto,
                                                        hub: StudioSimulator,
                                                        probe: MqttProbe) -> None:
    await first_run(mosquitto, hub, probe)
    before = await retained_under(mosquitto, "aqara/#")
    closed = f"ws://127.0.0.1:{free_port()}"
    async with running(Daemon(renamed(mosquitto, closed))) as daemon:
        assert daemon.topic_tree.stale is not None
        await probe.value("aqara/bridge/state", "online")
        await synced(probe)
        assert daemon.topic_tree.stale.cleared == 0
    after = await retained_under(mosquitto, "aqara/#")
    assert {t: p for t, p in after.items() if "/bridge/" not in t} == {
        t: p for t, p in before.items() if "/bridge/" not in t}


async def test_cleanup_can_be_turned_off(mosquitto: Mosquitto, hub: StudioSimulator,
                                         probe: MqttProbe) -> None:
    await first_run(mosquitto, hub, probe)
    config = renamed(mosquitto, hub.url, "bridge: {clear_stale_topics: false}")
    async with running(Daemon(config)) as daemon:
        assert daemon.topic_tree.stale is None
        await probe.value("aqara/dining_lamp/availability", "online")
        await synced(probe)
    assert await retained_under(mosquitto, "aqara/dining_light/1/Output/OnOff")
