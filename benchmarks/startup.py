"""Start-up time, memory and broker-restart republish time against the size of the home.

Run: ``.venv/bin/python -m benchmarks.startup [--sizes 0,1000,5000,10000,20000] [--heavy]``

For each size a fresh Mosquitto, the Studio simulator (own process, N synthetic devices) and
``mosquitto_sub`` on ``aqara/#`` and ``homeassistant/#`` start; then ``aqara-mqtt run`` (own
process, HA discovery on). Start-up is the time from launching the bridge to the last retained
topic or discovery config the C subscriber received (the bridge then idle, nothing arriving for
2 s); RSS is the bridge's after settling. ``--heavy`` adds 10,000 devices x 30 traits. At
10,000 devices the broker is then restarted (retained state lost) and the time the bridge takes
to republish everything is measured. Printed ratios are the "Done when" figures of issue 13:
start-up(10k)/start-up(5k), start-up(20k)/start-up(10k), and RSS KiB per trait above the idle
(0 devices) bridge.

Then the bridge is restarted with everything retained and nothing changed in the hub (issue 24):
the messages it publishes (all of them, and those on device topics: trait topics, documents,
availability), the time from launching it to the last message, and its RSS and peak RSS
(``VmHWM``: what was learned of the broker is dropped after the comparison).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from math import nan
from pathlib import Path

from benchmarks.harness import (
    CSubscriber,
    bridge,
    bridge_config,
    median,
    rss_mib,
    settle,
    simulator,
)
from bridge.simulators.sample_home import synthetic_devices
from tests.mosquitto import free_port, running_mosquitto

TOPICS = ["aqara/#", "homeassistant/#"]
DEVICE_TOPICS = ["aqara/+", "aqara/+/availability", "aqara/+/+/+/+"]
"""Documents, availability and trait topics: nothing of ``bridge/*`` has those shapes."""


@dataclass
class Restart:
    """A restart of the bridge with everything retained and nothing changed."""

    seconds: float
    messages: int
    device_messages: int
    rss: float
    peak: float


@dataclass
class Result:
    devices: int
    traits: int
    seconds: float
    messages: int
    rss: float
    peak: float
    republish: float | None = None
    restart: Restart | None = None


def trait_count(devices: int, traits: int | None) -> int:
    """Traits of the simulator's home (the same generator, same seed)."""
    return sum(len(d.iter_traits()) for d in synthetic_devices(devices, 1, traits))


def peak_mib(pid: int) -> float:
    """Peak resident set size of a process in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def retained_count(sub: CSubscriber, since: float, quiet: float = 1.0) -> int:
    """The retained messages a subscriber started after ``since`` got (nothing else publishes):
    its count once nothing arrived for ``quiet`` s."""
    while time.time() - max(sub.last, since) < quiet:
        time.sleep(0.1)
    return sub.count


def restart_unchanged(config: str, port: int) -> Restart:
    """Start the bridge again on what its last run left retained; count what it publishes."""
    since = time.time()
    every, device = CSubscriber(port, TOPICS), CSubscriber(port, DEVICE_TOPICS)
    before, device_before = retained_count(every, since), retained_count(device, since)
    start = time.time()
    with bridge(config) as process:
        # bridge/state, bridge/info and, once the snapshot is in, bridge/devices at least
        settle(every, process.pid, at_least=before + 3)
        result = Restart(every.last - start, every.count - before, device.count - device_before,
                         rss_mib(process.pid), peak_mib(process.pid))
    every.close()
    device.close()
    return result


def one(devices: int, traits: int | None, restart: bool, bridge_restart: bool) -> Result:
    """Start the bridge against a home of ``devices`` and measure it."""
    hub_port = free_port()
    with running_mosquitto() as broker, simulator(hub_port, devices, traits=traits):
        config = bridge_config(broker.port, hub_port)
        sub = CSubscriber(broker.port, TOPICS)
        start = time.time()
        with bridge(config) as process:
            # every device publishes at least its JSON document and its availability
            settle(sub, process.pid, at_least=2 * devices)
            result = Result(devices, trait_count(devices, traits), sub.last - start, sub.count,
                            rss_mib(process.pid), peak_mib(process.pid))
            sub.close()
            if restart:
                broker.restart()
                sub = CSubscriber(broker.port, TOPICS)
                settle(sub, process.pid, at_least=2 * devices)
                result.republish = sub.last - sub.first
                sub.close()
        if bridge_restart:
            result.restart = restart_unchanged(config, broker.port)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0,1000,5000,10000,20000",
                        help="comma-separated device counts (0 gives the idle baseline)")
    parser.add_argument("--heavy", action="store_true", help="also 10,000 devices x 30 traits")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of every size, interleaved; medians are reported")
    parser.add_argument("--no-restart", action="store_true",
                        help="skip the broker-restart republish at 10,000 devices")
    parser.add_argument("--no-bridge-restart", action="store_true",
                        help="skip the unchanged bridge restart after each start-up")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    cases: list[tuple[int, int | None]] = [(n, None) for n in sizes]
    if args.heavy:
        cases.append((10_000, 30))
    runs: dict[tuple[int, int | None], list[Result]] = {case: [] for case in cases}
    print(f"{'devices':>8} {'traits':>8} {'start-up s':>11} {'messages':>9} {'RSS MiB':>8} "
          f"{'KiB/trait':>9} {'peak MiB':>8}")
    for rep in range(args.repeat):  # interleaved, so a change in the machine's load hits all
        for n, t in cases:
            restart = not args.no_restart and t is None and n == 10_000 and rep == 0
            r = one(n, t, restart, not args.no_bridge_restart and rep == 0)
            runs[(n, t)].append(r)
            idle = runs[(0, None)][-1] if runs.get((0, None)) else None
            per_trait = ((r.rss - idle.rss) * 1024 / r.traits) if idle and r.traits else nan
            print(f"{n:8,} {r.traits:8,} {r.seconds:11.2f} {r.messages:9,} {r.rss:8.0f} "
                  f"{per_trait:9.2f} {r.peak:8.0f}", flush=True)
            if r.republish is not None:
                print(f"{'':8} republish after a broker restart: {r.republish:.2f} s", flush=True)
            if r.restart is not None:
                b = r.restart
                print(f"{'':8} unchanged bridge restart: {b.seconds:.2f} s to the last message, "
                      f"{b.messages:,} messages ({b.device_messages:,} on device topics), "
                      f"RSS {b.rss:.0f} MiB, peak {b.peak:.0f} MiB", flush=True)
    results = {case: median([r.seconds for r in found]) for case, found in runs.items()}
    if args.repeat > 1:
        print(f"medians of {args.repeat} runs:")
        for (n, t), found in runs.items():
            print(f"{n:8,} {found[0].traits:8,} {results[(n, t)]:11.2f} "
                  f"{'':9} {median([r.rss for r in found]):8.0f}")
    for big, small in ((10_000, 5_000), (20_000, 10_000)):
        if (big, None) in results and (small, None) in results:
            ratio = results[(big, None)] / results[(small, None)]
            print(f"start-up({big // 1000}k)/start-up({small // 1000}k): {ratio:.2f} "
                  f"(linear 2.0; target <= 2.3)")


if __name__ == "__main__":
    main()
