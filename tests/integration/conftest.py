"""Fixtures wiring the real parts: Mosquitto, the Studio simulator, the daemon, a probe client,
Chromium, a three-node NATS cluster."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bridge.app import Daemon
from bridge.config import Config, parse_config
from bridge.simulators.event_devices import event_devices
from bridge.simulators.sample_home import sample_home
from bridge.simulators.studio import StudioSimulator
from tests.brokers import NatsCluster
from tests.browser import Browser
from tests.mosquitto import Mosquitto
from tests.mqtt_probe import MqttProbe, eventually

TOKEN = "studio-test-token-5f2a9c"
PLUG = "lumi.158d0002c660dc"  # "Kitchen Plug / Kettle", friendly name kitchen_plug below
LIGHT = "lumi1.54ef44d1e6a0"  # "Dining Light"
SWITCH = "lumi1.54ef448a0b73"  # double rocker with metering
OFFLINE = "lumi.158d00045a1b2c"


def bridge_config(mosquitto: Mosquitto, hub: StudioSimulator | str, token: str = TOKEN,
                  extra: str = "", mqtt_extra: str = "") -> Config:
    """A config for the daemon under test (short write window, a few friendly names); ``hub``
    is the simulator or a hub URL (e.g. a closed port)."""
    hub_url = hub if isinstance(hub, str) else hub.url
    text = f"""
mqtt: {{url: "{mosquitto.url}", base_topic: aqara, keepalive: 10{mqtt_extra}}}
backends:
  - {{type: studio, name: home, url: "{hub_url}", token: "{token}", request_timeout: 5}}
devices:
  {PLUG}: {{name: kitchen_plug}}
  {LIGHT}: {{name: dining_light}}
bridge: {{write_window_ms: 150}}
{extra}
"""
    return parse_config(text, "test-config.yaml")


@pytest.fixture
async def hub() -> AsyncIterator[StudioSimulator]:
    simulator = StudioSimulator(TOKEN, sample_home())
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def studio() -> AsyncIterator[StudioSimulator]:
    """A hub with the sample home and the event devices (buttons, a cube)."""
    simulator = StudioSimulator(TOKEN, [*sample_home(), *event_devices()])
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def probe(mosquitto: Mosquitto) -> AsyncIterator[MqttProbe]:
    client = await MqttProbe(mosquitto.port, ["aqara/#"]).start()
    yield client
    client.stop()


@contextlib.asynccontextmanager
async def running(daemon: Daemon) -> AsyncIterator[Daemon]:
    """Run the daemon for the duration of the block, then stop it."""
    task = asyncio.create_task(daemon.run())
    try:
        yield daemon
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def settled(daemon: Daemon) -> None:
    """Until the topic tree has compared (or published) everything and the broker has it all:
    after that nothing of the start-up reaches a subscriber any more."""
    tree, link = daemon.topic_tree, daemon.mqtt
    await eventually(lambda: link.connected and not tree.syncing and tree.complete
                     and link.outstanding == 0 and link.parked == 0)


@pytest.fixture
async def daemon(mosquitto: Mosquitto, hub: StudioSimulator,
                 probe: MqttProbe) -> AsyncIterator[Daemon]:
    """The bridge, running, with its first snapshot published and in step with the broker."""
    async with running(Daemon(bridge_config(mosquitto, hub))) as bridge:
        await probe.value("aqara/bridge/state", "online")
        await probe.wait_for(lambda: probe.last.get("aqara/bridge/devices"))
        await settled(bridge)
        yield bridge


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for the whole module; each test starts with a fresh profile."""
    chromium = Browser()
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def cluster() -> Iterator[NatsCluster]:
    nodes = NatsCluster(Path(tempfile.mkdtemp(prefix="aq-nats-cluster-")))
    nodes.start()
    try:
        yield nodes
    finally:
        nodes.stop()
