"""Fault soak: the bridge under broker kills, hub cuts, fuzzed commands and storms.

Run: ``.venv/bin/python -m benchmarks.faults [--kills 5] [--cuts 60] [--fuzz 100000]`` (from the
repository root; Mosquitto installed). Everything runs on 127.0.0.1: a real Mosquitto, the Studio
simulator with the sample home, the daemon in this process, a paho subscriber.

1. Broker kills: SIGKILL, a change on the hub while the broker is gone, restart (half of the runs
   with persistence): seconds until a fresh subscriber sees ``online``, the change, and no retained
   topic of a device removed meanwhile.
2. Hub cuts: the simulator drops every connection, a value changes while away; seconds until the
   subscriber has it. Open file descriptors and asyncio tasks before and after.
3. Fuzz: random ``/set``, device ``/set``, ``/get`` and requests (tests/fuzz.py); crashes in the
   log and hub writes the simulator's own rules call invalid are counted (both should be 0).
4. Storms: 20,000 ``/get`` of one trait and 5,000 ``DEVICE_ADDED`` pushes: hub calls they cost
   and the bridge's memory growth.
5. Secrets: the Studio token in any MQTT message or log line (should be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import statistics
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from bridge.app import Daemon
from bridge.config import parse_config
from bridge.logsetup import configure_logging
from bridge.simulators.sample_home import sample_home, smart_plug
from bridge.simulators.studio import StudioSimulator
from bridge.simulators.studio_automations import check_value
from tests.fuzz import commands
from tests.mosquitto import Mosquitto, running_mosquitto
from tests.mqtt_probe import MqttProbe, synced

TOKEN = "soak-token-7f3e9a21c4"
POWER = "aqara/kitchen_plug/1/EnergyManagement/CurrentPower"
PLUG = "lumi.158d0002c660dc"
CRASHES = ("error handling mqtt message", "hub call crashed", "error in mqtt network",
           "unexpected error", "Traceback")


class Lines(logging.Handler):
    """Every log line, for counting crashes and looking for the token."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage() + (record.exc_text or ""))


def config(broker: Mosquitto, hub: StudioSimulator) -> Any:
    return parse_config(f"""
mqtt: {{url: "{broker.url}", base_topic: aqara, keepalive: 10}}
backends:
  - {{type: studio, name: home, url: "{hub.url}", token: "{TOKEN}", request_timeout: 5,
     reconnect_max_delay: 2}}
devices: {{"{PLUG}": {{name: kitchen_plug}}}}
bridge: {{write_window_ms: 50}}
""", "soak.yaml")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def broker_kills(broker: Mosquitto, hub: StudioSimulator, kills: int,
                       workdir: Path) -> list[float]:
    took = []
    for n in range(kills):
        persistent = n % 2 == 1
        assert broker.process is not None
        broker.process.kill()
        broker.process.wait()
        broker.process = None
        broker.extra_config = (f"persistence true\npersistence_location {workdir}/\n"
                               f"autosave_interval 1\n{_user()}") if persistent else _user()
        value = 1000 + n
        hub.set_value(PLUG, 1, "EnergyManagement", "CurrentPower", value)
        gone = f"lumi.soak{n:06d}"
        hub.remove_device(gone)
        started = time.monotonic()
        broker.start()
        fresh = await MqttProbe(broker.port, ["aqara/#"]).start()
        try:
            await fresh.value("aqara/bridge/state", "online", timeout=60)
            await fresh.value(POWER, str(value), timeout=60)
            await synced(fresh)
            stale = [t for t, m in fresh.last.items()
                     if t.startswith(f"aqara/{gone}") and m.payload]
            assert not stale, stale
            took.append(time.monotonic() - started)
        finally:
            fresh.stop()
    return took


def _user() -> str:
    return "user root\n" if os.geteuid() == 0 else ""


async def hub_cuts(hub: StudioSimulator, probe: MqttProbe, cuts: int) -> list[float]:
    took = []
    for n in range(cuts):
        await hub.drop_connections()
        value = 2000 + n
        hub.set_value(PLUG, 1, "EnergyManagement", "CurrentPower", value)
        started = time.monotonic()
        await probe.value(POWER, str(value), timeout=60)
        took.append(time.monotonic() - started)
    return took


async def fuzz(daemon: Daemon, hub: StudioSimulator, probe: MqttProbe, count: int) -> int:
    names = {e.device.id: e.topic_name for e in daemon.bridge.devices.values()}
    stream = commands(hub.devices, names, seed=12)
    batch = 1000
    for start in range(0, count, batch):
        for _ in range(min(batch, count - start)):
            topic, payload = next(stream)
            probe.client.publish(topic, payload, 1)
        mark = len(probe.messages)
        await probe.publish("aqara/bridge/request/health_check", "{}",
                            response_topic="aqara/_soak/barrier")
        await probe.next_on("aqara/_soak/barrier", mark, timeout=120)
    invalid = 0
    known = {d.device_id for d in hub.devices}
    for request in (m for m in hub.received if m.get("type") == "ExecuteTraitRequest"):
        for item in request.get("data") or []:
            key = (item["deviceId"], item["endpointId"], item["functionCode"], item["traitCode"])
            trait = next((t for ep, fn, t in hub.get_device(key[0]).iter_traits()
                          if (ep, fn, t.code) == key[1:]), None) if key[0] in known else None
            if trait is None or not trait.writable or not check_value(trait, item["value"])[0]:
                invalid += 1
    return invalid


async def storms(hub: StudioSimulator, probe: MqttProbe) -> dict[str, float]:
    def calls(kind: str) -> int:
        return sum(1 for m in hub.received if m.get("type") == kind)

    rss = rss_mib()
    reads = calls("GetTraitValueRequest")
    hub.latency = 0.05
    for _ in range(20_000):
        probe.client.publish(f"{POWER}/get", b"", 1)
    mark = len(probe.messages)
    await probe.publish("aqara/bridge/request/health_check", "{}",
                        response_topic="aqara/_soak/barrier")
    await probe.next_on("aqara/_soak/barrier", mark, timeout=120)
    reads = calls("GetTraitValueRequest") - reads
    described = calls("GetDevicesRequest")
    event = json.dumps({"type": "objectEvent", "msgId": "event-soak", "data": {
        "eventType": "DEVICE_ADDED", "data": {"deviceId": PLUG}}})
    for _ in range(5000):
        hub.push_raw(event)
    hub.set_value(PLUG, 1, "EnergyManagement", "CurrentPower", 31337)
    await probe.value(POWER, "31337", timeout=60)
    await asyncio.sleep(1)  # let the coalesced description finish (the hub answers in 50 ms)
    hub.latency = 0.0
    return {"get_reads": reads, "added_describes": calls("GetDevicesRequest") - described,
            "rss_growth_mib": rss_mib() - rss}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--cuts", type=int, default=60)
    parser.add_argument("--fuzz", type=int, default=100_000)
    args = parser.parse_args()
    configure_logging("warning", "json", stream=io.StringIO())  # counted, not printed
    lines = Lines()
    logging.getLogger().addHandler(lines)
    devices = sample_home() + [smart_plug(f"lumi.soak{n:06d}", f"Soak {n}", create_time=n + 1)
                               for n in range(args.kills)]
    hub = StudioSimulator(TOKEN, devices)
    await hub.start()
    with TemporaryDirectory(prefix="soak-") as tmp, running_mosquitto(_user()) as broker:
        daemon = Daemon(config(broker, hub))
        task = asyncio.create_task(daemon.run())
        probe = await MqttProbe(broker.port, ["aqara/#"]).start()
        try:
            await probe.wait_for(lambda: probe.last.get("aqara/bridge/devices"), timeout=60)
            probe.stop()
            kills = await broker_kills(broker, hub, args.kills, Path(tmp))
            probe = await MqttProbe(broker.port, ["aqara/#"]).start()
            await synced(probe)
            fds, tasks = open_fds(), len(asyncio.all_tasks())
            cuts = await hub_cuts(hub, probe, args.cuts)
            fds_after, tasks_after = open_fds(), len(asyncio.all_tasks())
            invalid = await fuzz(daemon, hub, probe, args.fuzz)
            storm = await storms(hub, probe)
            assert not task.done(), "the daemon stopped"
            leaked = sum(TOKEN.encode() in m.payload for m in probe.messages)
            leaked += sum(TOKEN in line for line in lines.lines)
            crashes = sum(any(c in line for c in CRASHES) for line in lines.lines)
        finally:
            probe.stop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    await hub.stop()
    print(f"broker kills: {len(kills)} (half with persistence) converged in "
          f"median {statistics.median(kills):.2f} s, max {max(kills):.2f} s, nothing stale")
    print(f"hub cuts: {len(cuts)} converged in median {statistics.median(cuts):.2f} s, "
          f"max {max(cuts):.2f} s; fds {fds} -> {fds_after}, tasks {tasks} -> {tasks_after}")
    print(f"fuzz: {args.fuzz} commands, {crashes} crash lines, {invalid} invalid hub writes")
    print(f"storms: 20,000 /get -> {storm['get_reads']:.0f} hub reads; 5,000 DEVICE_ADDED -> "
          f"{storm['added_describes']:.0f} descriptions; RSS +{storm['rss_growth_mib']:.1f} MiB")
    print(f"secrets: token found {leaked} times in {len(probe.messages)} MQTT messages "
          f"and {len(lines.lines)} log lines")


if __name__ == "__main__":
    asyncio.run(main())
