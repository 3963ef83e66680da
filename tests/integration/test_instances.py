"""Several bridges on one Mosquitto: none ever clears what another one published.

Three instances, as people with more than one site or hub kind run them: a Studio hub with the
sample home (``site_a``), the Tuya cloud simulator (``site_b``) and a second Studio hub with
synthetic devices (``site_c``), all announcing to the one ``homeassistant`` prefix. Each is
restarted, once while another's hub is down; before and after, every instance keeps all of its
retained Home Assistant configs and trait topics. A bridge started on a base topic another one
is online on refuses, publishing nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest

from bridge.app import Daemon, run_until_signalled
from bridge.cli import health_check
from bridge.config import Config, parse_config
from bridge.simulators.sample_home import sample_home, synthetic_devices
from bridge.simulators.studio import StudioSimulator
from bridge.simulators.tuya import TuyaSimulator
from bridge.simulators.tuya_home import USER_UID
from tests.integration.conftest import TOKEN, running
from tests.integration.test_bridge_tuya import ALL_DEVICES
from tests.integration.test_stale_topics import retained_under
from tests.mosquitto import Mosquitto, free_port
from tests.mqtt_probe import MqttProbe, eventually


def studio_config(mosquitto: Mosquitto, hub: StudioSimulator, base: str,
                  instance: str = "") -> Config:
    return parse_config(f"""
mqtt: {{url: "{mosquitto.url}", base_topic: {base}, keepalive: 10}}
{instance}
backends: [{{type: studio, name: home, url: "{hub.url}", token: "{TOKEN}", request_timeout: 5,
            reconnect_max_delay: 0.5}}]
""", f"{base}.yaml")


def tuya_config(mosquitto: Mosquitto, sim: TuyaSimulator, base: str) -> Config:
    return parse_config(f"""
mqtt: {{url: "{mosquitto.url}", base_topic: {base}, keepalive: 10}}
backends:
  - {{type: tuya, name: tuya, url: "{sim.url}", push_url: "{sim.push_url}",
      client_id: "{sim.client_id}", secret: "{sim.secret}", uid: "{USER_UID}",
      poll_interval: 0.3, request_timeout: 5, reconnect_max_delay: 0.5}}
""", f"{base}.yaml")


async def settled(daemon: Daemon) -> None:
    """The instance announced everything and finished its clean-ups."""
    discovery = daemon.discovery
    assert discovery is not None
    await eventually(lambda: discovery.in_step and discovery.complete, timeout=20)


async def holdings(mosquitto: Mosquitto, base: str) -> tuple[int, int]:
    """(Home Assistant configs naming ``<base>/bridge/state``, retained topics under base)."""
    configs = await retained_under(mosquitto, "homeassistant/#")
    mine = [p for p in configs.values() if f'"{base}/bridge/state"'.encode() in p]
    topics = await retained_under(mosquitto, f"{base}/#")
    return len(mine), len(topics)


@contextlib.asynccontextmanager
async def started(config: Config) -> AsyncIterator[Daemon]:
    async with running(Daemon(config)) as daemon:
        await settled(daemon)
        yield daemon


async def test_three_instances_keep_each_others_entities_and_topics(
        mosquitto: Mosquitto) -> None:
    hub_a = StudioSimulator(TOKEN, sample_home())
    hub_c = StudioSimulator(TOKEN, synthetic_devices(5, seed=7))
    sim_b = TuyaSimulator()
    for part in (hub_a, hub_c, sim_b):
        await part.start()
    a_config = studio_config(mosquitto, hub_a, "site_a")
    b_config = tuya_config(mosquitto, sim_b, "site_b")
    c_config = studio_config(mosquitto, hub_c, "site_c")
    try:
        async with started(a_config), started(b_config), started(c_config):
            before = {base: await holdings(mosquitto, base)
                      for base in ("site_a", "site_b", "site_c")}
        assert all(configs > 0 and topics > configs for configs, topics in before.values())
        # each restarted on its own, the others stopped (a stopped bridge's topics stay)
        for config in (a_config, b_config, c_config):
            async with started(config):
                pass
        # the others running, each restarted; the last while site_a's hub is down
        async with started(a_config), started(b_config):
            async with started(c_config):
                pass
            await hub_a.stop()
            async with started(c_config), started(b_config):
                pass
        after = {base: await holdings(mosquitto, base) for base in before}
        assert after == before
    finally:
        for part in (hub_c, sim_b):
            await part.stop()
        with contextlib.suppress(Exception):
            await hub_a.stop()


async def test_a_second_bridge_on_an_occupied_base_topic_refuses_and_publishes_nothing(
        mosquitto: Mosquitto) -> None:
    hub = StudioSimulator(TOKEN, sample_home())
    sim = TuyaSimulator()
    await hub.start()
    await sim.start()
    watcher = await MqttProbe(mosquitto.port, ["aqara/#", "homeassistant/#"]).start()
    try:
        async with started(studio_config(mosquitto, hub, "aqara")) as first:
            before = await holdings(mosquitto, "aqara")
            info_before = (await retained_under(mosquitto, "aqara/bridge/info"))[
                "aqara/bridge/info"]
            watcher.messages.clear()
            second = Daemon(tuya_config(mosquitto, sim, "aqara"))
            code = await asyncio.wait_for(run_until_signalled(second), 20)
            assert code == 2
            assert second.refused is not None
            assert "is online on the base topic 'aqara'" in second.refused
            assert "mqtt.base_topic" in second.refused
            assert await holdings(mosquitto, "aqara") == before
            retained = await retained_under(mosquitto, "aqara/bridge/#")
            assert retained["aqara/bridge/info"] == info_before
            assert retained["aqara/bridge/state"] == b"online"
            # nothing at all from the second bridge reached the broker: no Tuya device, no
            # bridge/* topic (the first bridge's trait changes may go on meanwhile)
            assert not [m for m in watcher.messages if any(d in m.topic for d in ALL_DEVICES)]
            assert not [m for m in watcher.messages if m.topic in (
                "aqara/bridge/state", "aqara/bridge/info", "aqara/bridge/devices",
                "aqara/bridge/log")]
            assert first.bridge.conflict is None
    finally:
        watcher.stop()
        await hub.stop()
        await sim.stop()


async def test_with_several_brokers_the_bridge_says_which_one_it_is_on(
        mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]) -> None:
    hub = StudioSimulator(TOKEN, sample_home())
    await hub.start()
    closed = free_port()  # the first broker of the list is not there
    config = parse_config(f"""
mqtt: {{url: ["mqtt://127.0.0.1:{closed}", "{mosquitto.url}"], keepalive: 10}}
backends: [{{type: studio, name: home, url: "{hub.url}", token: "{TOKEN}"}}]
""", "two-brokers.yaml")
    try:
        async with started(config) as daemon:
            where = f"127.0.0.1:{mosquitto.port}"
            assert daemon.mqtt.broker == where
            info = json.loads((await retained_under(mosquitto, "aqara/bridge/info"))[
                "aqara/bridge/info"])
            assert info["mqtt"]["broker"] == where
            assert info["instance"]["id"] == "aqara"
            assert info["config"]["mqtt"]["urls"] == [f"mqtt://127.0.0.1:{closed}",
                                                      mosquitto.url]
            capsys.readouterr()
            assert await asyncio.to_thread(health_check, config, 5.0) == 0
            assert capsys.readouterr().out.strip() == f"ok: hub home connected (broker {where})"
    finally:
        await hub.stop()
