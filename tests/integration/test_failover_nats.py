"""The pair on a 3-node NATS cluster (JetStream, streams replicated 3 times): each member names
all three nodes, starting with its own (the active on node 1, the standby on node 2); node 1 is
killed under load. One member serves again (the active moved to another node, or the standby
took over), no ``/set`` ever runs twice, every ``/set`` sent once commands are served again runs
once, and the far node ends holding the hub's truth (that every node holds the same is
test_brokers_bridge's)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from bridge.simulators.studio import StudioSimulator
from tests.brokers import NatsCluster
from tests.integration.test_brokers_bridge import everything_retained
from tests.integration.test_failover import all_executed
from tests.mqtt_probe import MqttProbe
from tests.pair import (
    TOKEN,
    LeaseLog,
    Member,
    SetLoad,
    change_hub,
    compare,
    executions,
    expected_state,
    member_config,
    pair_home,
    started,
)

pytestmark = pytest.mark.integration


def standing_by(reader: MqttProbe, topic: str) -> bool:
    seen = reader.last.get(topic)
    return seen is not None and seen.payload.startswith(b"{")


async def retained_standby(port: int, member: str, timeout: float = 120) -> None:
    """Until the node retains ``member``'s standby document. A young cluster may set a QoS 1
    subscription up slowly or lose a live message to it: a fresh subscriber reads what it
    retains, again until it is there."""
    topic = f"aqara/bridge/standby/{member}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(AssertionError, TimeoutError):  # no SUBACK, or not yet
            reader = await MqttProbe(port, [topic], protocol=paho.MQTTv311).start()
            try:
                await reader.wait_for(functools.partial(standing_by, reader, topic), timeout=5)
                return
            finally:
                reader.stop()
    raise AssertionError(f"{topic} was not retained within {timeout} s")


async def first_served(hub: StudioSimulator, sets: SetLoad, since: float,
                       timeout: float = 120) -> float:
    """When the first /set sent after ``since`` that reached the hub was sent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = executions(hub, sets)
        done = [at for i, (at, _l, _v) in enumerate(sets.sent) if at > since and counts[i]]
        if done:
            return done[0]
        await asyncio.sleep(0.2)
    raise AssertionError(f"no /set sent after the node died reached the hub in {timeout} s")


async def clean_stretch(hub: StudioSimulator, sets: SetLoad, length: float = 10,
                        timeout: float = 200) -> tuple[float, float]:
    """The first ``length`` seconds of load in which every /set sent reached the hub once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        end = time.monotonic() - 2  # what was sent since may still be on its way
        counts = executions(hub, sets)
        due = [i for i, (at, _l, _v) in enumerate(sets.sent) if end - length <= at < end]
        if len(due) > length * 50 and all(counts[i] == 1 for i in due):
            return end - length, end
        await asyncio.sleep(1)
    raise AssertionError(f"no {length:g} s of commands all reached the hub within {timeout} s")


async def converged_on(port: int, hub: StudioSimulator, timeout: float = 150) -> dict[str, bytes]:
    """The node's retained state once it holds the hub's truth for every driven trait (a node
    of a recovering cluster may take minutes to serve a wildcard subscription again)."""
    deadline = time.monotonic() + timeout
    missing: list[str] = []
    stale: list[str] = []
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            retained = await everything_retained(port)
            missing, stale = compare(retained, expected_state(hub, portable=True))
            if not missing and not stale:
                return retained
        await asyncio.sleep(1)
    raise AssertionError(f"node on port {port}: missing {missing[:3]}, stale {stale[:3]}")


async def test_a_pair_on_a_nats_cluster_survives_the_loss_of_the_actives_node(
        cluster: NatsCluster, tmp_path: Path) -> None:
    hub = StudioSimulator(TOKEN, pair_home())
    await hub.start()
    urls = cluster.urls
    far = cluster.ports[2]
    lease = LeaseLog("127.0.0.1", far, paho.MQTTv311)
    portable = ", topic_style: portable"
    a = Member("a", member_config(urls, hub.url, "a", mqtt_extra=portable), tmp_path)
    b = Member("b", member_config([urls[1], urls[2], urls[0]], hub.url, "b",
                                  mqtt_extra=portable), tmp_path)
    stop = asyncio.Event()
    sets = SetLoad("127.0.0.1", far, portable=True, protocol=paho.MQTTv311)
    try:
        async with started([a, b], now=1):
            await lease.active(timeout=60)
            await b.start()
            await retained_standby(far, "b")
            load = [asyncio.create_task(sets.run(stop)),
                    asyncio.create_task(change_hub(hub, stop))]
            try:
                await asyncio.sleep(3)  # load against the active
                killed = time.monotonic()
                cluster.kill(0)
                served = await first_served(hub, sets, killed, timeout=200)
                clean = await clean_stretch(hub, sets)
            finally:
                stop.set()
                for task in load:
                    await task
            holder = lease.latest()
            assert holder is not None
            print(f"NATS cluster pair: the active's node died; a command reached the hub again "
                  f"after {served - killed:.2f} s, every command from {clean[0] - killed:.2f} s "
                  f"on (lease: member {holder.member}, generation {holder.generation})")
            # on a cluster a command can be lost around a node's death (before it, as seen
            # once, 3 of 1,221); once it serves again every one arrives, and none ever twice
            await all_executed(hub, sets, [clean], timeout=60)
            await converged_on(far, hub)
            for member in (a, b):
                assert await member.stop() == 0
    finally:
        lease.close()
        await hub.stop()
        with contextlib.suppress(Exception):
            cluster.start_node(0)
