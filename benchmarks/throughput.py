"""Throughput and latency of hub → bridge → Mosquitto → subscriber, against the raw paho ceiling.

Run: ``.venv/bin/python -m benchmarks.throughput`` (from the repository root; Mosquitto installed).

1. Raw ceiling: a bare paho publisher (its own network thread, QoS as the bridge uses) sends
   N messages to a fresh broker; a subscriber counts them.
2. Bridge throughput: the Studio simulator, in its own process, pushes random trait changes of
   1,000 synthetic devices at a rate doubled from 1,000/s until the bridge falls behind (it has
   to park messages); the bridge republishes them; the same kind of subscriber counts the trait
   messages. The figure is the highest rate the subscriber received with the bridge keeping up.
   (On a 2-core machine the simulator, the broker and the subscriber share the CPU with the
   bridge, so this understates the bridge.)
3. Latency at a fixed 1,000 events/s: the simulator (own thread and loop) writes a sequence
   number into a STRING trait; the subscriber timestamps each number's arrival.
The ratio printed is bridge events/s ÷ raw messages/s (target ≥ 0.3); p99 target ≤ 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bridge.app import Daemon
from bridge.config import parse_config
from bridge.logsetup import configure_logging
from bridge.mqtt import INFLIGHT_WINDOW
from bridge.simulators.sample_home import synthetic_devices
from bridge.simulators.studio import StudioSimulator
from tests.mosquitto import free_port, running_mosquitto

TOKEN = "bench-token"
QOS = 1


class Counter:
    """A paho subscriber (own thread) counting messages and noting arrival times."""

    def __init__(self, port: int, topic: str, marker: str | None = None) -> None:
        self.marker = marker
        self.counting = marker is None
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.arrivals: dict[str, float] = {}
        self.watch_prefix: str | None = None
        self._ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_connect = lambda c, *_a: c.subscribe(topic, QOS)
        self.client.on_subscribe = lambda *_a: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise RuntimeError("subscriber did not get its SUBACK")
        if marker is not None:  # retained messages all arrive before this marker does
            self.client.publish(marker, b"go", QOS)

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        now = time.perf_counter()
        if msg.topic == self.marker:
            self.counting = True
            return
        if msg.retain or not self.counting:
            return
        if self.watch_prefix is not None and msg.topic.startswith(self.watch_prefix):
            value = msg.payload.decode()
            if value.startswith("seq-"):
                self.arrivals[value] = now
        if not self.count:
            self.first = now
        self.count += 1
        self.last = now

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def raw_ceiling(port: int, messages: int) -> float:
    """Messages per second a bare paho publisher gets through this broker to one subscriber."""
    counter = Counter(port, "raw/#")
    publisher = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    publisher.max_inflight_messages_set(INFLIGHT_WINDOW)
    publisher.connect("127.0.0.1", port)
    publisher.loop_start()
    payload = b"1234.5"
    start = time.perf_counter()
    for i in range(messages):
        publisher.publish(f"raw/device{i % 1000}/1/EnergyManagement/CurrentPower", payload, QOS,
                          True)
    deadline = time.monotonic() + 120
    while counter.count < messages and time.monotonic() < deadline:
        time.sleep(0.01)
    elapsed = counter.last - start
    publisher.disconnect()
    publisher.loop_stop()
    counter.close()
    return counter.count / elapsed


@contextlib.contextmanager
def simulator_process(port: int, devices: int, rate: float) -> Iterator[None]:
    """``aqara-mqtt simulate studio`` in its own process, until the block ends."""
    cmd = [sys.executable, "-m", "bridge", "simulate", "studio", "--port", str(port),
           "--token", TOKEN, "--devices", str(devices), "--rate", str(rate), "--seed", "1"]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        process.terminate()
        process.wait(10)


def bridge_config(broker_port: int, hub_url: str) -> str:
    return (f"mqtt: {{url: 'mqtt://127.0.0.1:{broker_port}', qos: {QOS}}}\n"
            f"backends: [{{type: studio, url: '{hub_url}', token: {TOKEN}}}]\n"
            "bridge: {device_state_topic: true}\nlog: {level: error}\n")


async def bridge_throughput(broker_port: int, devices: int, seconds: float,
                            rate: float) -> tuple[float, float, int, bool]:
    """(hub events handled/s, trait messages delivered/s, bridge RSS MiB, kept up?).

    The bridge kept up when nothing had to be parked during the window and paho's queue did
    not build up a backlog.
    """
    hub_port = free_port()
    with simulator_process(hub_port, devices, rate=rate):
        config = parse_config(bridge_config(broker_port, f"ws://127.0.0.1:{hub_port}"), "bench")
        daemon = Daemon(config)
        task = asyncio.create_task(daemon.run())
        while not (daemon.bridge.devices and daemon.mqtt.connected):
            await asyncio.sleep(0.05)
        # let the initial snapshot (every retained topic) drain before measuring
        deadline = time.monotonic() + 60
        while (daemon.mqtt.parked or daemon.mqtt.outstanding > 500) and (
                time.monotonic() < deadline):
            await asyncio.sleep(0.05)
        counter = Counter(broker_port, "aqara/+/+/+/+", marker="aqara/_bench/0/go/now")
        while not counter.counting:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        events0, count0, start = daemon.bridge.events_handled, counter.count, time.perf_counter()
        kept_up = True
        while time.perf_counter() - start < seconds:
            await asyncio.sleep(0.1)
            kept_up = kept_up and daemon.mqtt.parked == 0
        kept_up = kept_up and daemon.mqtt.outstanding <= 2000  # no backlog building up in paho
        elapsed = time.perf_counter() - start
        events = (daemon.bridge.events_handled - events0) / elapsed
        delivered = (counter.count - count0) / elapsed
        peak_rss = _rss_mib()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    counter.close()
    return events, delivered, peak_rss, kept_up


def _rss_mib() -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return -1


async def latency(broker_port: int, rate: float, seconds: float) -> list[float]:
    """Per-event latency (ms), hub change → subscriber, at ``rate`` events per second."""
    devices = synthetic_devices(200, seed=2)
    hub = StudioSimulator(TOKEN, devices)
    hub_loop = asyncio.new_event_loop()
    thread = threading.Thread(target=hub_loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(hub.start(), hub_loop).result(10)
    config = parse_config(bridge_config(broker_port, hub.url), "bench")
    daemon = Daemon(config)
    task = asyncio.create_task(daemon.run())
    while not (daemon.bridge.devices and daemon.mqtt.connected):
        await asyncio.sleep(0.05)
    while daemon.mqtt.parked or daemon.mqtt.outstanding > 100:
        await asyncio.sleep(0.05)
    counter = Counter(broker_port, "aqara/+/0/BasicInformation/FirmwareRevision",
                      marker="aqara/_bench/0/BasicInformation/FirmwareRevision")
    counter.watch_prefix = "aqara/"
    while not counter.counting:
        await asyncio.sleep(0.05)
    sent: dict[str, float] = {}
    total = int(rate * seconds)

    def drive() -> None:
        start = time.perf_counter()
        for i in range(total):
            target = start + i / rate
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            device = devices[i % len(devices)].device_id
            value = f"seq-{i}"
            sent[value] = time.perf_counter()
            hub_loop.call_soon_threadsafe(hub.set_value, device, 0, "BasicInformation",
                                          "FirmwareRevision", value)

    await asyncio.to_thread(drive)
    deadline = time.monotonic() + 10
    while len(counter.arrivals) < total and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    counter.close()
    asyncio.run_coroutine_threadsafe(hub.stop(), hub_loop).result(10)
    hub_loop.call_soon_threadsafe(hub_loop.stop)
    lost = total - len(counter.arrivals)
    if lost:
        print(f"  warning: {lost} of {total} latency events never arrived")
    return [(counter.arrivals[v] - t) * 1000 for v, t in sent.items() if v in counter.arrivals]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--raw-messages", type=int, default=50_000)
    parser.add_argument("--max-rate", type=float, default=64_000,
                        help="the simulator's rate doubles from 1,000/s up to this")
    args = parser.parse_args()
    configure_logging("error", "console")
    with running_mosquitto() as broker:
        ceiling = await asyncio.to_thread(raw_ceiling, broker.port, args.raw_messages)
    print(f"raw paho ceiling:   {ceiling:10,.0f} msg/s (QoS {QOS}, one subscriber)")
    best = 0.0
    rate = 1000.0
    while rate <= args.max_rate:
        with running_mosquitto() as broker:
            events, delivered, rss, kept_up = await bridge_throughput(
                broker.port, args.devices, args.seconds, rate)
        print(f"  simulator {rate:8,.0f}/s: bridge handled {events:8,.0f} events/s, "
              f"subscriber got {delivered:8,.0f} trait msg/s, RSS {rss} MiB"
              f"{'' if kept_up else ' (backlog: fell behind)'}")
        if not kept_up:
            break
        best = max(best, delivered)
        rate *= 2
    print(f"bridge throughput:  {best:10,.0f} trait msg/s sustained end to end "
          f"({args.devices} devices; simulator, bridge, broker and subscriber on one machine)")
    print(f"ratio:              {best / ceiling:10.2f} (sustained / raw ceiling; target >= 0.3)")
    with running_mosquitto() as broker:
        samples = await latency(broker.port, 1000, args.seconds)
    print(f"latency @1000/s:    p50 {statistics.median(samples):.2f} ms, "
          f"p99 {percentile(samples, 0.99):.2f} ms, max {max(samples):.2f} ms "
          f"({len(samples)} events; target p99 <= 20 ms)")


if __name__ == "__main__":
    asyncio.run(main())
