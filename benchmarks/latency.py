"""Write round trip: ``/set`` → bridge → hub call → hub push → retained topic, through Mosquitto.

Run: ``.venv/bin/python -m benchmarks.latency [--rates 0,100,1000,3000] [--samples 200]``

The Studio simulator (own process, 1,000 synthetic devices) changes random traits at each rate
while the bridge (``aqara-mqtt run``, own process, default settings: 50 ms write window, QoS 1)
serves it. A paho client in this process sets a thermostat's setpoint, alternately 5 and 30 °C
(random changes move a setpoint by at most 1.25 °C, so they never produce the value awaited), and
times the retained state's arrival. Writes are spaced beyond the write window, as a person or an
automation would send them, so each one is the first of its burst. The printed p50/p99 judge the
issue-13 target (p50 <= 5 ms, p99 <= 10 ms); the rate column shows the hub load meanwhile.
"""

from __future__ import annotations

import argparse
import threading
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.harness import (
    bridge,
    bridge_config,
    median,
    percentile,
    simulator,
)
from bridge.simulators.sample_home import synthetic_devices
from tests.mosquitto import free_port, running_mosquitto

DEVICES = 1000


def thermostat() -> str:
    """An online thermostat of the simulator's home (same generator, same seed)."""
    return next(d.device_id for d in synthetic_devices(DEVICES, 1)
                if d.model == "lumi.airrtc.agl001" and d.online)


class Writer:
    """Sets a trait over MQTT and waits for its retained state; its own network thread."""

    def __init__(self, port: int, device: str) -> None:
        self.state = f"aqara/{device}/1/Thermostat/SetTemperature"
        self._awaited: float | None = None
        self._arrived = threading.Event()
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_connect = lambda c, *_a: c.subscribe(self.state, 1)
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("no SUBACK")
        self.arrival = 0.0

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        try:
            value = float(msg.payload)
        except ValueError:
            return
        if self._awaited is not None and value == self._awaited:
            self.arrival = time.perf_counter()
            self._arrived.set()

    def round_trip(self, value: float) -> float | None:
        """Milliseconds from publishing ``/set`` to the retained state showing ``value``."""
        self._arrived.clear()
        self._awaited = value
        start = time.perf_counter()
        self.client.publish(f"{self.state}/set", f"{value:g}", 1)
        if not self._arrived.wait(5):
            return None
        return (self.arrival - start) * 1000

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_ready(writer: Writer, timeout: float = 120) -> None:
    """Until the bridge serves the device (a round trip succeeds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if writer.round_trip(30.0) is not None:
            return
    raise RuntimeError("the bridge never answered a write")


def measure(rate: float, samples: int) -> tuple[list[float], int]:
    """Round trips (ms) at one hub load, and how many never completed."""
    hub_port = free_port()
    device = thermostat()
    with running_mosquitto(nodelay=True) as broker, simulator(hub_port, DEVICES, rate=rate), \
            bridge(bridge_config(broker.port, hub_port, discovery=False)):
        writer = Writer(broker.port, device)
        try:
            wait_ready(writer)
            times: list[float] = []
            lost = 0
            for i in range(samples):
                time.sleep(0.07)  # beyond the 50 ms window: every write leads its burst
                took = writer.round_trip(5.0 if i % 2 == 0 else 30.0)
                if took is None:
                    lost += 1
                else:
                    times.append(took)
        finally:
            writer.close()
    return times, lost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="0,100,1000,3000",
                        help="hub events/s during the measurement, comma-separated")
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    print(f"{'hub events/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'lost':>5}")
    for rate in (float(r) for r in args.rates.split(",")):
        times, lost = measure(rate, args.samples)
        print(f"{rate:12,.0f} {median(times):8.2f} {percentile(times, 0.99):8.2f} "
              f"{max(times):8.2f} {lost:5}", flush=True)
    print("target: p50 <= 5 ms, p99 <= 10 ms (issue 13)")


if __name__ == "__main__":
    main()
