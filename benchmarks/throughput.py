"""Throughput against a bare paho publisher, and output under 1x, 2x and 5x overload.

Run: ``.venv/bin/python -m benchmarks.throughput [--seconds 5]``

Every part is its own process: Mosquitto, the Studio simulator (1,000 synthetic devices, random
trait changes at the offered rate), the bridge (``aqara-mqtt run``, QoS 1) and ``mosquitto_sub``
(C) counting the trait topics ``aqara/+/+/+/+``. Nothing is counted inside the bridge's process.

1. Ceilings: a bare paho publisher driven by an asyncio loop exactly as the bridge drives paho
   (socket on the loop, the same in-flight window, QoS 1, retained, 6,000 topics), in its own
   process; and Mosquitto's own C publisher (``mosquitto_pub -l``, QoS 1, retained, the same
   window), the physical reference. Both through a broker configured as for the bridge's runs,
   counted by the same C subscriber.
2. Capacity without the device JSON documents (``device_state_topic: false``), so one hub event
   is one MQTT message as for paho: the offered rate doubles from 2,000/s until the bridge falls
   behind (delivers below 90 % of offered); then, ``--repeat`` times, the two ceilings and a
   capacity run at that overloaded rate, interleaved (the ceiling alone moved between 13,400
   and 26,000 msg/s from one session's machine to another's): capacity / ceiling is the ratio of
   their medians. Then the ramp once more with the documents (the default: about two messages
   per event).
3. Overload: offered at 1x, 2x and 5x the default capacity, ``--repeat`` times interleaved
   (medians reported). Printed:
   offered, handled by the bridge (its ``health_check``), delivered, and staleness: the time a
   ``/set`` takes to show in the retained state meanwhile (median of a few; the hub's answer
   waits behind its own backlog, so beyond capacity this grows with the run's length).
Ratios printed: capacity / ceiling (target >= 0.8) and delivered(2x), delivered(5x) /
delivered(1x) (target >= 0.9).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.harness import CSubscriber, bridge, bridge_config, median, simulator
from benchmarks.latency import DEVICES, Writer, thermostat
from bridge.mqtt import INFLIGHT_WINDOW
from tests.mosquitto import free_port, running_mosquitto

TRAITS = "aqara/+/+/+/+"
LOST = 5000.0
"""A /set whose state did not show within 5 s counts as 5 s (printed as >=)."""

WARM_UP = 2.0
"""Seconds of load before counting: the bridge has taken its snapshot, the hub's rate is
steady and the broker's queues have filled."""


async def bare_paho(port: int, messages: int) -> None:
    """Publish ``messages`` retained QoS 1 messages with paho on this asyncio loop."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    state = {"acked": 0, "sent": 0}
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.max_inflight_messages_set(0)  # as the bridge: our window, no walk per ack
    client.max_queued_messages_set(0)

    def refill() -> None:
        while state["sent"] < messages and state["sent"] - state["acked"] < INFLIGHT_WINDOW:
            i = state["sent"]
            client.publish(f"raw/device{i % 1000}/1/EnergyManagement/T{i % 6}", b"1234.5", 1,
                           True)
            state["sent"] += 1

    def on_publish(*_a: Any) -> None:
        state["acked"] += 1
        if state["acked"] == messages:
            done.set()
        elif state["sent"] - state["acked"] <= INFLIGHT_WINDOW // 2:
            loop.call_soon(refill)

    def on_connect(*_a: Any) -> None:
        loop.call_soon(refill)

    def unregister_write(_c: paho.Client, _u: Any, s: Any) -> None:
        loop.remove_writer(s)

    client.on_publish = on_publish
    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    sock = client.socket()
    assert isinstance(sock, socket.socket)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as the bridge does
    client.on_socket_register_write = lambda _c, _u, s: loop.add_writer(s, client.loop_write)
    client.on_socket_unregister_write = unregister_write
    loop.add_reader(sock, client.loop_read)
    if client.want_write():
        loop.add_writer(sock, client.loop_write)
    misc = loop.call_later(1, client.loop_misc)
    await asyncio.wait_for(done.wait(), 300)
    misc.cancel()
    client.disconnect()


def paho_publisher(port: int, messages: int) -> list[str]:
    """The bare paho publisher (:func:`bare_paho`) in its own process."""
    return [sys.executable, "-m", "benchmarks.throughput", "--bare-paho", str(port), str(messages)]


def c_publisher(port: int, _messages: int) -> list[str]:
    """Mosquitto's C publisher: one retained QoS 1 message per line of its input, with the
    bridge's in-flight window."""
    return [shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub", "-h", "127.0.0.1",
            "-p", str(port), "-q", "1", "-r", "-M", str(INFLIGHT_WINDOW), "-l",
            "-t", "raw/device0/1/EnergyManagement/T0"]


def ceiling(publisher: Callable[[int, int], list[str]], messages: int) -> float:
    """Messages/s a publisher process gets through Mosquitto (configured as for the bridge's
    runs), counted by the C subscriber."""
    with running_mosquitto(nodelay=True) as broker:
        sub = CSubscriber(broker.port, ["raw/#"])
        subprocess.run(publisher(broker.port, messages), input=b"1234.5\n" * messages,
                       stdout=subprocess.DEVNULL, check=True, timeout=300)
        deadline = time.monotonic() + 60
        while sub.count < messages and time.monotonic() < deadline:
            time.sleep(0.05)
        sub.close()
        return sub.count / (sub.last - sub.first)


class Health:
    """Asks the bridge for ``health_check`` (its state and the events handled so far)."""

    def __init__(self, port: int) -> None:
        self._answer: dict[str, Any] = {}
        self._got = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("aqara/bridge/response/health_check", 1)
        self.client.loop_start()

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        self._answer = json.loads(msg.payload)
        self._got.set()

    def ask(self, timeout: float = 30) -> dict[str, Any]:
        """The ``data`` of a fresh ``health_check`` answer."""
        self._got.clear()
        self.client.publish("aqara/bridge/request/health_check", "{}", 1)
        if not self._got.wait(timeout):
            raise TimeoutError("no health_check answer")
        data: dict[str, Any] = self._answer["data"]
        return data

    def events(self) -> int:
        """Hub events the bridge has handled."""
        return int(self.ask()["events_handled"])

    def wait_ready(self, devices: int, timeout: float = 120) -> None:
        """Until the bridge is connected to both sides and serves every device. (A write
        round trip would not do: under overload the hub's push answering it waits behind
        the hub's own backlog, longer than any fixed timeout.)"""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:  # a request sent before the bridge subscribed goes unanswered
                data = self.ask(timeout=1)
            except TimeoutError:
                continue
            if data["healthy"] and data["devices"] >= devices:
                return
            time.sleep(0.2)
        raise RuntimeError("the bridge never got ready")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run(offered: float, seconds: float, documents: bool, staleness: bool
        ) -> tuple[float, float, float]:
    """(handled events/s, delivered trait msg/s, staleness ms) at one offered rate."""
    hub_port = free_port()
    extra = f"bridge: {{device_state_topic: {'true' if documents else 'false'}}}\n"
    config = bridge_config(0, hub_port, discovery=False, extra=extra)
    with running_mosquitto(nodelay=True) as broker:
        config = config.replace("127.0.0.1:0", f"127.0.0.1:{broker.port}")
        with simulator(hub_port, DEVICES, rate=offered), bridge(config):
            writer = Writer(broker.port, thermostat())
            health = Health(broker.port)
            try:
                health.wait_ready(DEVICES)
                sub = CSubscriber(broker.port, [TRAITS])
                time.sleep(WARM_UP)  # the load is running
                events0, count0, start = health.events(), sub.count, time.time()
                stale: list[float] = []
                while time.time() - start < seconds:
                    if staleness:
                        took = writer.round_trip(5.0 if len(stale) % 2 else 30.0)
                        stale.append(LOST if took is None else took)
                    time.sleep(0.5)
                events1, count1, end = health.events(), sub.count, time.time()
                sub.close()
            finally:
                writer.close()
                health.close()
    elapsed = end - start
    return (events1 - events0) / elapsed, (count1 - count0) / elapsed, median(stale)


def ramp(seconds: float, documents: bool) -> tuple[float, float]:
    """Double the offered rate from 2,000/s until the bridge falls behind (delivers below 90 %
    of it); returns that overloaded rate and the most trait messages/s delivered."""
    capacity, rate = 0.0, 2000.0
    while True:
        handled, delivered, _ = run(rate, seconds, documents, staleness=False)
        print(f"  offered {rate:8,.0f}/s: handled {handled:8,.0f}/s, delivered {delivered:8,.0f}"
              f" msg/s{' (documents on)' if documents else ''}", flush=True)
        capacity = max(capacity, delivered)
        if delivered < 0.9 * rate or rate >= 64_000:
            return rate, capacity
        rate *= 2


def capacity_against_ceiling(seconds: float, raw_messages: int, repeat: int) -> None:
    """Capacity and the bare paho ceiling, ``repeat`` times each, interleaved.

    Capacity is what the bridge delivers when offered more than it can take (the first rate of
    the ramp it fell behind at): overload keeps output at capacity (the 1x/2x/5x part shows it).
    Each ceiling run is paired with a capacity run minutes apart at most, so a change in the
    machine's speed moves both; the ratio is of the medians."""
    overloaded, _ = ramp(seconds, documents=False)
    paho_raw: list[float] = []
    c_raw: list[float] = []
    capacity: list[float] = []
    for _ in range(repeat):
        paho_raw.append(ceiling(paho_publisher, raw_messages))
        c_raw.append(ceiling(c_publisher, raw_messages))
        capacity.append(run(overloaded, seconds, documents=False, staleness=False)[1])
        print(f"  ceilings: bare paho {paho_raw[-1]:9,.0f} msg/s, mosquitto_pub {c_raw[-1]:9,.0f}"
              f" msg/s; bridge offered {overloaded:,.0f}/s: delivered {capacity[-1]:9,.0f}"
              " trait msg/s", flush=True)
    got = median(capacity)
    print(f"capacity: {got:9,.0f} trait msg/s (medians of {repeat}); capacity / bare paho = "
          f"{got / median(paho_raw):.2f} (target >= 0.8); capacity / mosquitto_pub = "
          f"{got / median(c_raw):.2f} (the physical reference)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--raw-messages", type=int, default=60_000)
    parser.add_argument("--repeat", type=int, default=3,
                        help="ceiling/capacity pairs, and overload runs per factor")
    parser.add_argument("--bare-paho", nargs=2, type=int, metavar=("PORT", "N"),
                        help=argparse.SUPPRESS)  # the ceiling's worker process
    args = parser.parse_args()
    if args.bare_paho:
        asyncio.run(bare_paho(*args.bare_paho))
        return
    capacity_against_ceiling(args.seconds, args.raw_messages, args.repeat)
    _, capacity = ramp(args.seconds, documents=True)
    print(f"capacity with device documents (the default): {capacity:9,.0f} trait msg/s",
          flush=True)
    delivered: dict[int, list[float]] = {1: [], 2: [], 5: []}
    for _ in range(args.repeat):  # interleaved, so a change in the machine's load hits all three
        for factor in (1, 2, 5):
            offered = factor * capacity
            handled, got, stale = run(offered, args.seconds, documents=True, staleness=True)
            delivered[factor].append(got)
            print(f"  {factor}x: offered {offered:8,.0f}/s, handled {handled:8,.0f}/s, delivered "
                  f"{got:8,.0f} trait msg/s, /set→state {stale:7.1f} ms"
                  f"{' (or more)' if stale >= LOST else ''}", flush=True)
    base = median(delivered[1])
    for factor in (2, 5):
        print(f"delivered({factor}x) / delivered(1x) = {median(delivered[factor]) / base:.2f} "
              f"(medians of {args.repeat}; target >= 0.9)")

if __name__ == "__main__":
    main()
