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
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from math import nan

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


@dataclass
class Result:
    devices: int
    traits: int
    seconds: float
    messages: int
    rss: float
    republish: float | None = None


def trait_count(devices: int, traits: int | None) -> int:
    """Traits of the simulator's home (the same generator, same seed)."""
    return sum(len(d.iter_traits()) for d in synthetic_devices(devices, 1, traits))


def one(devices: int, traits: int | None, restart: bool) -> Result:
    """Start the bridge against a home of ``devices`` and measure it."""
    hub_port = free_port()
    with running_mosquitto() as broker, simulator(hub_port, devices, traits=traits):
        sub = CSubscriber(broker.port, TOPICS)
        start = time.time()
        with bridge(bridge_config(broker.port, hub_port)) as process:
            # every device publishes at least its JSON document and its availability
            settle(sub, process.pid, at_least=2 * devices)
            result = Result(devices, trait_count(devices, traits), sub.last - start, sub.count,
                            rss_mib(process.pid))
            sub.close()
            if restart:
                broker.restart()
                sub = CSubscriber(broker.port, TOPICS)
                settle(sub, process.pid, at_least=2 * devices)
                result.republish = sub.last - sub.first
                sub.close()
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
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    cases: list[tuple[int, int | None]] = [(n, None) for n in sizes]
    if args.heavy:
        cases.append((10_000, 30))
    runs: dict[tuple[int, int | None], list[Result]] = {case: [] for case in cases}
    print(f"{'devices':>8} {'traits':>8} {'start-up s':>11} {'messages':>9} {'RSS MiB':>8} "
          f"{'KiB/trait':>9}")
    for rep in range(args.repeat):  # interleaved, so a change in the machine's load hits all
        for n, t in cases:
            restart = not args.no_restart and t is None and n == 10_000 and rep == 0
            r = one(n, t, restart)
            runs[(n, t)].append(r)
            idle = runs[(0, None)][-1] if runs.get((0, None)) else None
            per_trait = ((r.rss - idle.rss) * 1024 / r.traits) if idle and r.traits else nan
            print(f"{n:8,} {r.traits:8,} {r.seconds:11.2f} {r.messages:9,} {r.rss:8.0f} "
                  f"{per_trait:9.2f}", flush=True)
            if r.republish is not None:
                print(f"{'':8} republish after a broker restart: {r.republish:.2f} s", flush=True)
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
