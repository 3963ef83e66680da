"""The benchmarks' hub: ``aqara-mqtt simulate studio`` that never drops a slow client.

Run by :func:`benchmarks.harness.simulator` as ``python -m benchmarks.hub PORT DEVICES RATE SEED
[TRAITS]``. The simulator drops a connection whose outbound queue passes 100,000 messages (as a
hub would protect itself); under a sustained 5x overload that happens within seconds, so here the
hub keeps the backlog and the bridge's output under overload can be measured for as long as asked.

Nor does it make changes while :data:`BACKLOG` of its messages wait for the bridge: the bridge
then sees what it sees from any hub that sends faster than it reads, a socket that always has
data, and on a 2-core machine the hub does not take a core from the bridge and the broker to
generate changes that only pile up (at 5x it did: the bridge handled 14,800 events/s instead of
17,700).
"""

from __future__ import annotations

import asyncio
import sys

from benchmarks.harness import TOKEN
from bridge.simulators.sample_home import synthetic_devices
from bridge.simulators.serving import serve_forever
from bridge.simulators.studio import StudioSimulator

BACKLOG = 20_000
"""Messages queued for the bridge above which the hub makes no changes (about a second of the
bridge's capacity)."""


async def main(port: int, devices: int, rate: float, seed: int, traits: int | None) -> None:
    sim = StudioSimulator(TOKEN, synthetic_devices(devices, seed, traits), port=port,
                          max_queue=sys.maxsize, max_backlog=BACKLOG)
    await serve_forever(sim, lambda s: f"benchmark hub on {s.ws_endpoint}", rate, seed)


if __name__ == "__main__":
    port, devices, rate, seed = sys.argv[1:5]
    traits = int(sys.argv[5]) if len(sys.argv) > 5 else None
    asyncio.run(main(int(port), int(devices), float(rate), int(seed), traits))
