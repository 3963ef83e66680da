"""The bridge on the brokers its users run beside Mosquitto, each from its own package.

Per broker, with the default settings (``mqtt.version`` left at 5: a 3.1.1-only broker needs no
configuration) plus the one documented setting where the broker needs it
(``topic_style: portable`` on NATS and RabbitMQ): connect, retained trait topics a fresh
subscriber receives, a ``/set`` that reaches the hub and comes back as retained state, Home
Assistant discovery, then a restart of the bridge and one of the broker, each followed by
another ``/set``. Subscribers use exact topics, which every broker here retains for
(RabbitMQ keeps retained messages for exact-topic subscriptions only). On NATS without the
setting, the bridge finds the dotted topics NATS drops the connection for, says so once and
bridges the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from bridge.app import Daemon
from bridge.config import Config, parse_config
from bridge.outputs.discovery import DiscoveryOptions, device_object_id
from bridge.simulators.studio import StudioSimulator
from tests.brokers import Aedes, Amqtt, Broker, Ejabberd, Nats, NatsCluster, RabbitMq
from tests.integration.conftest import LIGHT, TOKEN, running
from tests.logwatch import LogWatch
from tests.mosquitto import free_port
from tests.mqtt_probe import MqttProbe, eventually

KINDS: dict[str, type[Broker]] = {"ejabberd": Ejabberd, "aedes": Aedes, "nats": Nats,
                                  "rabbitmq": RabbitMq}
PORTABLE = frozenset({"nats", "rabbitmq"})
ONOFF = "aqara/dining_light/1/Output/OnOff"
CONFIG_TOPIC = f"homeassistant/device/{device_object_id(LIGHT, DiscoveryOptions())}/config"


HOMIE_ROOT = "homie/5/aqara-mqtt/$state"
ANSWER = "aqara/bridge/response/health_check"


_TRANSACTIONS = itertools.count()


def _answer(probe: MqttProbe, transaction: int) -> bool:
    return any(m.topic == ANSWER and m.json().get("transaction") == transaction
               for m in probe.messages)


async def answered(probe: MqttProbe, timeout: float = 30.0) -> None:
    """Ask ``health_check`` once a second until the bridge answers (a request published while
    its subscription is not yet in place reaches no one: MQTT keeps none for later)."""
    async with asyncio.timeout(timeout):
        while True:
            attempt = next(_TRANSACTIONS)  # unique: an answer to an earlier ask is no proof
            await probe.publish("aqara/bridge/request/health_check",
                                json.dumps({"transaction": attempt}))
            with contextlib.suppress(TimeoutError):
                await probe.wait_for(functools.partial(_answer, probe, attempt), timeout=1)
                return


@pytest.fixture(scope="module", params=sorted(KINDS))
def broker(request: pytest.FixtureRequest) -> Iterator[tuple[str, Broker]]:
    kind: str = request.param
    server = KINDS[kind](port=free_port(), workdir=Path(tempfile.mkdtemp(prefix=f"aq-{kind}-")))
    server.start()
    try:
        yield kind, server
    finally:
        server.stop()


def config_for(kind: str, server: Broker, hub: StudioSimulator, style: str | None = None,
               homie: bool = True) -> Config:
    style = style or ("portable" if kind in PORTABLE else "standard")
    credentials = (f', username: "{server.username}", password: "{server.password}"'
                   if server.username else "")
    return parse_config(f"""
mqtt: {{url: "{server.url}", keepalive: 10, topic_style: {style}{credentials}}}
backends: [{{type: studio, name: home, url: "{hub.url}", token: "{TOKEN}", request_timeout: 5}}]
devices: {{{LIGHT}: {{name: dining_light}}}}
bridge: {{write_window_ms: 20}}
homie: {{enabled: {str(homie).lower()}}}
""", f"{kind}.yaml")


async def subscriber(server: Broker, topics: list[str]) -> MqttProbe:
    probe = MqttProbe(server.port, [*topics, ANSWER], protocol=paho.MQTTv311)
    if server.username:
        probe.client.username_pw_set(server.username, server.password)
    return await probe.start()


@pytest.fixture
async def watcher(broker: tuple[str, Broker]) -> AsyncIterator[MqttProbe]:
    probe = await subscriber(broker[1], ["aqara/bridge/state", ONOFF, CONFIG_TOPIC,
                                         "aqara/bridge/log", HOMIE_ROOT])
    yield probe
    probe.stop()


async def switch(probe: MqttProbe, hub: StudioSimulator, value: bool) -> None:
    """A ``/set`` reaches the hub once and comes back as the retained state (once the bridge
    answers requests: its subscriptions are in place)."""
    await answered(probe)
    before = len([m for m in hub.received if m.get("type") == "ExecuteTraitRequest"])
    await probe.publish(f"{ONOFF}/set", "ON" if value else "OFF")
    await probe.value(ONOFF, "true" if value else "false", timeout=20)
    writes = [m for m in hub.received if m.get("type") == "ExecuteTraitRequest"]
    assert len(writes) == before + 1


async def fresh_retained(server: Broker, topic: str) -> bytes:
    """What a new subscriber to ``topic`` gets, flagged retained."""
    probe = await subscriber(server, [topic])
    try:
        found = await probe.wait_for(
            lambda: next((m for m in probe.messages if m.topic == topic and m.retain), None))
        payload: bytes = found.payload
        return payload
    finally:
        probe.stop()


async def test_the_bridge_works_and_survives_restarts_on_each_broker(
        broker: tuple[str, Broker], hub: StudioSimulator, watcher: MqttProbe) -> None:
    kind, server = broker
    config = config_for(kind, server, hub)
    async with running(Daemon(config)) as daemon:
        await watcher.value("aqara/bridge/state", "online", timeout=20)
        config_payload = json.loads(await watcher.value(CONFIG_TOPIC, timeout=20))
        assert config_payload["avty"][0]["t"] == "aqara/bridge/state"
        await watcher.value(HOMIE_ROOT, "ready", timeout=20)  # '$' levels are fine everywhere
        await switch(watcher, hub, False)
        assert await fresh_retained(server, ONOFF) == b"false"
        if kind in PORTABLE:  # neither speaks MQTT 5: no setting was needed to fall back
            assert daemon.mqtt.version == "3.1.1"
            assert daemon.mqtt.fallback_reason is not None
    async with running(Daemon(config)):  # the bridge restarted
        await watcher.value("aqara/bridge/state", "online", timeout=20)
        await switch(watcher, hub, True)
    async with running(Daemon(config)) as daemon:
        await watcher.value("aqara/bridge/state", "online", timeout=20)
        connections = daemon.mqtt.connections
        await asyncio.to_thread(server.restart)
        guard = daemon.bridge.guard
        assert guard is not None
        await eventually(lambda: daemon.mqtt.connections > connections and guard.watching,
                         timeout=60)
        again = await subscriber(server, ["aqara/bridge/state", ONOFF])
        try:
            await again.value("aqara/bridge/state", "online", timeout=30)
            await again.value(ONOFF, "true", timeout=30)
            await switch(again, hub, False)
        finally:
            again.stop()


async def test_nats_without_the_setting_drops_the_dotted_topics_and_says_so(
        hub: StudioSimulator) -> None:
    server = Nats(port=free_port(), workdir=Path(tempfile.mkdtemp(prefix="aq-nats-")))
    server.start()
    try:
        probe = await subscriber(server, ["aqara/bridge/state", ONOFF, "aqara/bridge/log"])
        try:
            async with running(Daemon(config_for("nats", server, hub, "standard"))) as daemon:
                line = await probe.wait_for(lambda: next(
                    (m.json() for m in probe.messages if m.topic == "aqara/bridge/log"
                     and "topic_style: portable" in m.text), None), timeout=60)
                assert "'.'" in line["message"]
                await switch(probe, hub, False)  # the friendly-named light is still bridged
                await switch(probe, hub, True)
                assert daemon.mqtt.blocked
                assert daemon.mqtt.blocked_publishes > 0
        finally:
            probe.stop()
    finally:
        server.stop()





async def everything_retained(port: int) -> dict[str, bytes]:
    """Every retained topic of the bridge on one node (NATS serves wildcards retained). A
    cluster that lost a node refuses some new subscriptions for a while (SUBACK 0x80): a
    subscriber that got nothing tries again."""
    async with asyncio.timeout(90):
        while True:
            probe = await MqttProbe(port, ["aqara/#"], protocol=paho.MQTTv311).start()
            try:
                counts: list[int] = []

                def settled(seen: list[int] = counts, p: MqttProbe = probe) -> bool:
                    seen.append(len({m.topic for m in p.messages if m.retain}))
                    return len(seen) > 25 and seen[-1] == seen[-25] > 0

                with contextlib.suppress(TimeoutError):
                    await eventually(settled, timeout=10)
                    return {m.topic: m.payload for m in probe.messages if m.retain}
            finally:
                probe.stop()


async def test_a_three_node_nats_cluster_loses_the_bridges_node(
        cluster: NatsCluster, hub: StudioSimulator) -> None:
    """The bridge names all three nodes; node 1, which it is on, is killed: it moves on, and
    every node serves the same retained state, and a /set reaches the hub exactly once."""
    urls = ", ".join(f'"{url}"' for url in cluster.urls)
    config = parse_config(f"""
mqtt: {{url: [{urls}], keepalive: 10, topic_style: portable}}
backends: [{{type: studio, name: home, url: "{hub.url}", token: "{TOKEN}", request_timeout: 5}}]
devices: {{{LIGHT}: {{name: dining_light}}}}
bridge: {{write_window_ms: 20}}
""", "cluster.yaml")
    far = await MqttProbe(cluster.ports[2], ["aqara/bridge/state", ONOFF, ANSWER],
                          protocol=paho.MQTTv311).start()
    try:
        async with running(Daemon(config)) as daemon:
            await far.value("aqara/bridge/state", "online", timeout=30)
            await switch(far, hub, False)
            assert daemon.mqtt.broker == cluster.urls[0].removeprefix("mqtt://")
            guard = daemon.bridge.guard
            assert guard is not None
            connections = daemon.mqtt.connections
            began = time.monotonic()
            cluster.kill(0)
            await eventually(lambda: daemon.mqtt.connections > connections, timeout=60)
            moved = time.monotonic() - began
            # the cluster refuses some subscriptions for a while after losing a node (SUBACK
            # 0x80 after a stall of seconds each): the bridge subscribes them again
            await eventually(lambda: guard.watching, timeout=120)
            assert daemon.mqtt.broker in {u.removeprefix("mqtt://") for u in cluster.urls[1:]}
            await answered(far, timeout=120)
            # every subscription granted (the /set filters too, which a recovering cluster
            # may refuse and the bridge retries)
            await eventually(lambda: daemon.mqtt.subscriptions_pending == 0, timeout=120)
            commands = time.monotonic() - began
            await switch(far, hub, True)  # once at the hub: nothing lost, nothing doubled
            served = time.monotonic() - began
            second = await everything_retained(cluster.ports[1])
            third = await everything_retained(cluster.ports[2])
            assert second[ONOFF] == third[ONOFF] == b"true"
            assert second["aqara/bridge/state"] == b"online"
            assert second == third
            assert len(second) > 100
            print(f"NATS cluster: on another node {moved:.2f} s after the kill, commands "
                  f"answered after {commands:.2f} s, a /set round trip done after {served:.2f} s")
            assert moved < 60
    finally:
        far.stop()
        cluster.start_node(0)


async def test_amqtt_leaks_retained_messages_and_the_bridge_says_so_once(
        hub: StudioSimulator, logs: LogWatch) -> None:
    """amqtt 0.12 sends a connecting client the retained messages of every filter any client
    subscribed to: the bridge drops those outside its own subscriptions, says so once, and
    bridges on (amqtt stays unsupported: README, Brokers)."""
    server = Amqtt(port=free_port(), workdir=Path(tempfile.mkdtemp(prefix="aq-amqtt-")))
    server.start()
    try:
        other = await subscriber(server, ["elsewhere/#"])
        other.client.publish("elsewhere/secret", b"not the bridge's", qos=1, retain=True)
        await other.wait_for(lambda: other.last.get("elsewhere/secret"))
        probe = await subscriber(server, ["aqara/bridge/state", ONOFF])
        try:
            # one connection (Homie's keeper would be a second one, hearing the same)
            async with running(Daemon(config_for("amqtt", server, hub, homie=False))):
                await probe.value("aqara/bridge/state", "online", timeout=20)
                await logs.wait_for("did not subscribe to", timeout=20)
                await switch(probe, hub, False)
            assert logs.count("did not subscribe to") == 1
        finally:
            probe.stop()
            other.stop()
    finally:
        server.stop()
