"""The benchmarks' hub: ``aqara-mqtt simulate studio`` that never drops a slow client.

Run by :func:`benchmarks.harness.simulator` as ``python -m benchmarks.hub PORT DEVICES RATE SEED
[TRAITS]``. The simulator drops a connection whose outbound queue passes 100,000 messages (as a
hub would protect itself); under a sustained 5x overload that happens within seconds, so here the
hub keeps the backlog and the bridge's output under overload can be measured for as long as asked.
"""

from __future__ import annotations

import asyncio
import sys

from benchmarks.harness import TOKEN
from bridge.simulators.sample_home import synthetic_devices
from bridge.simulators.serving import serve_forever
from bridge.simulators.studio import StudioSimulator


async def main(port: int, devices: int, rate: float, seed: int, traits: int | None) -> None:
    sim = StudioSimulator(TOKEN, synthetic_devices(devices, seed, traits), port=port,
                          max_queue=sys.maxsize)
    await serve_forever(sim, lambda s: f"benchmark hub on {s.ws_endpoint}", rate, seed)


if __name__ == "__main__":
    port, devices, rate, seed = sys.argv[1:5]
    traits = int(sys.argv[5]) if len(sys.argv) > 5 else None
    asyncio.run(main(int(port), int(devices), float(rate), int(seed), traits))
