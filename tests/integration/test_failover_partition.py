"""A network partition between the active member and the broker, made with a network namespace
(the active runs in it, reaching the broker and the hub over two veth links; the broker link is
cut for 30 s, silently, like a pulled cable): the standby takes over, the cut-off active stops
by itself when its lease runs out, and after the heal it learns it was replaced and sends
nothing to the hub; the broker ends holding the hub's truth."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bridge.simulators.studio import StudioSimulator
from tests.integration.test_failover import BOUND, QUIET, all_executed, converged, standing_by
from tests.mosquitto import free_port, running_mosquitto
from tests.mqtt_probe import MqttProbe
from tests.netns import isolated_host, netns_available
from tests.pair import TOKEN, LeaseLog, Member, SetLoad, change_hub, member_config, pair_home

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(netns_available() is not None, reason=str(netns_available())),
]

PARTITION = 30.0


async def test_a_partitioned_active_is_replaced_and_after_the_heal_sends_nothing(
        tmp_path: Path) -> None:
    with isolated_host() as host:
        port = free_port(host.broker_ip)
        with running_mosquitto(extra_config=f"listener {port} {host.broker_ip}\n") as broker:
            hub = StudioSimulator(TOKEN, pair_home(), host=host.hub_ip)
            await hub.start()
            lease = LeaseLog("127.0.0.1", broker.port)
            probe = await MqttProbe(broker.port, ["aqara/bridge/#"]).start()
            a = Member("a", member_config(f"mqtt://{host.broker_ip}:{port}", hub.url, "a"),
                       tmp_path, prefix=host.command())
            b = Member("b", member_config(broker.url, hub.url, "b"), tmp_path)
            stop = asyncio.Event()
            sets = SetLoad("127.0.0.1", broker.port)
            load = [asyncio.create_task(sets.run(stop)),
                    asyncio.create_task(change_hub(hub, stop))]
            try:
                await a.start()
                first = await lease.active()
                assert first.member == "a"
                await b.start()
                await standing_by(probe, "b")
                await asyncio.sleep(2)  # load against the active
                old = hub.executions[-1].connection
                host.partition_broker()
                cut = time.monotonic()
                try:
                    takeover = await lease.active(other_than="a", above=first.generation)
                    await asyncio.sleep(cut + PARTITION - time.monotonic())
                finally:
                    host.heal_broker()
                await standing_by(probe, "a", timeout=60)  # TCP backs off: seconds to notice
                await asyncio.sleep(2)
                windows = [(first.at, cut - QUIET), (takeover.at, time.monotonic() - QUIET)]
            finally:
                stop.set()
                for task in load:
                    await task
            try:
                print(f"takeover after the partition: {takeover.at - cut:.2f} s")
                assert takeover.at - cut < BOUND
                after = [e for e in hub.executions if e.at >= takeover.at]
                assert after, "the new active executed nothing"
                assert {e.connection for e in after} == {after[0].connection} != {old}
                reasons = [line["reason"] for line in
                           a.said("this member is no longer active; standing by")]
                assert reasons
                assert "not renewed" in reasons[0]
                await all_executed(hub, sets, windows)
                await converged(broker, hub)
            finally:
                for member in (a, b):
                    await member.stop()
                probe.stop()
                lease.close()
                await hub.stop()
