"""Failover: takeover times of an active/standby pair, and commands executed twice or lost.

Run: ``.venv/bin/python -m benchmarks.failover [--kills 20] [--pauses 5]`` (from the repository
root; Mosquitto installed). Everything runs on 127.0.0.1: a real Mosquitto, the Studio simulator
(20 lights, 20 meters) in this process, two members as ``python -m bridge run`` processes with
the default failover settings (keepalive 4 s, lease 6 s), 100 ``/set`` and 500 hub changes per
second throughout (tests/pair.py).

1. Kills: SIGKILL the active, time until the other member renews the lease (it acts from then
   on), start the killed one again (it stands by); ``--kills`` times, alternating.
2. Pauses: SIGSTOP the active for 15 s (past its lease), SIGCONT; time until the other renews.

Printed: median and max takeover per kind, beside the bound the lease gives (term + grace +
settle after a silence; will wait + settle after a death), /set executed more than once (must be
0), and /set sent while a member was active that never reached the hub (must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import tempfile
import time
from pathlib import Path

from bridge.lease import Timing
from bridge.simulators.studio import StudioSimulator
from tests.mosquitto import running_mosquitto
from tests.mqtt_probe import MqttProbe
from tests.pair import (
    TOKEN,
    LeaseLog,
    LeaseSeen,
    Member,
    SetLoad,
    change_hub,
    executions,
    member_config,
    pair_home,
    started,
)

QUIET = 0.5
"""Seconds before a kill in which a /set may die with the active (not yet at the hub)."""


async def standing_by(probe: MqttProbe, name: str) -> None:
    topic = f"aqara/bridge/standby/{name}"
    await probe.wait_for(lambda: (m := probe.last.get(topic)) and m.payload.startswith(b"{"),
                         timeout=30)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--pauses", type=int, default=5)
    args = parser.parse_args()
    timing = Timing.from_keepalive(4)
    kills: list[float] = []
    pauses: list[float] = []
    windows: list[tuple[float, float]] = []
    with running_mosquitto() as broker, tempfile.TemporaryDirectory() as tmp:
        hub = StudioSimulator(TOKEN, pair_home())
        await hub.start()
        lease = LeaseLog("127.0.0.1", broker.port)
        probe = await MqttProbe(broker.port, ["aqara/bridge/#"]).start()
        pair = {name: Member(name, member_config(broker.url, hub.url, name), Path(tmp))
                for name in ("a", "b")}
        stop = asyncio.Event()
        sets = SetLoad("127.0.0.1", broker.port)
        async with started([pair["a"], pair["b"]], now=1):
            current: LeaseSeen = await lease.active()
            await pair["b"].start()
            await standing_by(probe, "b")
            load = [asyncio.create_task(sets.run(stop)),
                    asyncio.create_task(change_hub(hub, stop))]
            for n in range(args.kills + args.pauses):
                await asyncio.sleep(2)
                active = pair[current.member]
                began = time.monotonic()
                windows.append((current.at, began - QUIET))
                pause = n >= args.kills
                if pause:
                    active.signal(signal.SIGSTOP)
                else:
                    await active.kill()
                current = await lease.active(other_than=active.name, above=current.generation)
                (pauses if pause else kills).append(current.at - began)
                if pause:
                    await asyncio.sleep(began + 15 - time.monotonic())
                    active.signal(signal.SIGCONT)
                else:
                    await active.start()
                await standing_by(probe, active.name)
            await asyncio.sleep(2)
            windows.append((current.at, time.monotonic() - QUIET))
            stop.set()
            for task in load:
                await task
            await asyncio.sleep(3)  # the last writes reach the hub
        counts = executions(hub, sets)
        due = [i for i, (at, _light, _value) in enumerate(sets.sent)
               if any(start <= at < end for start, end in windows)]
        doubled = sum(1 for n in counts.values() if n > 1)
        lost = sum(1 for i in due if counts[i] != 1)
        probe.stop()
        lease.close()
        await hub.stop()
    death_bound = timing.will_wait + timing.settle
    silence_bound = timing.takeover_bound + timing.settle
    if kills:
        print(f"SIGKILL x{len(kills)}: takeover median {statistics.median(kills):.2f} s, max "
              f"{max(kills):.2f} s (lease bound after a death: {death_bound:g} s + reconnect)")
    if pauses:
        print(f"SIGSTOP x{len(pauses)}: takeover median {statistics.median(pauses):.2f} s, max "
              f"{max(pauses):.2f} s (bound after a silence: {silence_bound:g} s + reconnect)")
    print(f"/set: {len(sets.sent)} sent, {doubled} executed more than once, {lost} of {len(due)} "
          "sent while a member was active never reached the hub")


if __name__ == "__main__":
    asyncio.run(main())
