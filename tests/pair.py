"""Failover pairs in tests: members as ``python -m bridge run`` processes, a log of the lease
as the broker delivered it, and load (``/set`` and hub changes) with what it should leave."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bridge.simulators.sample_home import SimDevice, ct_light, energy_meter
from bridge.simulators.studio import StudioSimulator

TOKEN = "failover-token-5d1e"
LIGHTS = [f"lumi.fl{i:012x}" for i in range(20)]
METERS = [f"lumi.fm{i:012x}" for i in range(20)]
CT = ("ColorControl", "ColorTemperature")
POWER = ("EnergyManagement", "CurrentPower")
CT_RANGE = range(153, 501)
EXECUTION_SLACK = 5.0


def pair_home() -> list[SimDevice]:
    """20 lights whose colour temperature the load writes, 20 meters whose power it changes."""
    lights = [ct_light(d, f"Light {i}", create_time=1_700_000_000_000 + i, mired=153)
              for i, d in enumerate(LIGHTS)]
    meters = [energy_meter(d, f"Meter {i}", traits=6, create_time=1_700_000_100_000 + i)
              for i, d in enumerate(METERS)]
    return lights + meters


def level(device_id: str, portable: bool = False) -> str:
    """A device's topic level (``mqtt.topic_style: portable`` spells the dot ``_``)."""
    return device_id.replace(".", "_") if portable else device_id


def member_config(mqtt_url: str | list[str], hub_url: str, member: str, extra: str = "",
                  mqtt_extra: str = "") -> str:
    """A failover member's config: the defaults a user gets (keepalive 4, lease 6 s); several
    broker URLs are tried in order."""
    return f"""mqtt: {{url: {json.dumps(mqtt_url)}, base_topic: aqara{mqtt_extra}}}
instance: {{failover: true, member: {member}}}
backends:
  - {{type: studio, name: home, url: "{hub_url}", token: "{TOKEN}", request_timeout: 5,
     reconnect_max_delay: 0.5}}
bridge: {{write_window_ms: 20}}
log: {{format: json, level: info}}
{extra}"""


class Member:
    """One member process; its JSON log lines are in :meth:`log`."""

    def __init__(self, name: str, config: str, workdir: Path,
                 prefix: Sequence[str] = ()) -> None:
        self.name = name
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(config)
        self.log_path = workdir / f"{name}.log"
        self.prefix = list(prefix)
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.prefix, sys.executable, "-m", "bridge", "run", "-c",
                str(self.config_path), stdout=asyncio.subprocess.DEVNULL, stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    async def kill(self) -> None:
        """SIGKILL: no goodbye, no release."""
        self.signal(signal.SIGKILL)
        assert self.process is not None
        await self.process.wait()

    async def stop(self, timeout: float = 20) -> int:
        """SIGTERM, and the exit code."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
        return await asyncio.wait_for(self.process.wait(), timeout)

    def log(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(raw))
        return lines

    def said(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.log() if line.get("event") == event]


@contextlib.asynccontextmanager
async def started(members: Sequence[Member], now: int | None = None
                  ) -> AsyncIterator[Sequence[Member]]:
    """Run the first ``now`` members (all by default; the block starts the others when it
    wants); every one is killed afterwards, their logs kept."""
    try:
        for member in members[:now]:
            await member.start()
        yield members
    finally:
        for member in members:
            if member.process is not None and member.process.returncode is None:
                member.signal(signal.SIGKILL)
                await member.process.wait()


@dataclass(frozen=True)
class LeaseSeen:
    at: float
    """``time.monotonic()`` when it arrived."""
    member: str
    generation: int
    renewal: int
    state: str


class LeaseLog:
    """Every ``aqara/bridge/lease`` record, as one more client of the broker receives it."""

    def __init__(self, host: str, port: int, protocol: MQTTProtocolVersion = paho.MQTTv5
                 ) -> None:
        self.seen: list[LeaseSeen] = []
        self._lock = threading.Lock()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
        self._client.on_connect = lambda c, *_a: c.subscribe("aqara/bridge/lease", 1)
        self._client.on_message = self._message
        self._client.connect(host, port)
        self._client.loop_start()

    def _message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        with contextlib.suppress(ValueError, KeyError):
            record = json.loads(msg.payload)
            with self._lock:
                self.seen.append(LeaseSeen(time.monotonic(), record["member"],
                                           record["generation"], record["renewal"],
                                           record["state"]))

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def latest(self) -> LeaseSeen | None:
        with self._lock:
            return self.seen[-1] if self.seen else None

    async def active(self, other_than: str | None = None, above: int = 0,
                     timeout: float = 30) -> LeaseSeen:
        """The first renewal (a settled claim renews at once) of a generation above ``above``
        by a member other than ``other_than``."""
        def found() -> LeaseSeen | None:
            with self._lock:
                return next((s for s in self.seen if s.generation > above and s.renewal >= 1
                             and s.state == "held" and s.member != other_than), None)
        deadline = time.monotonic() + timeout
        while (seen := found()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"no member took over within {timeout} s; "
                                     f"last lease {self.latest()}")
            await asyncio.sleep(0.02)  # polled: the records arrive on paho's thread
        return seen


@dataclass
class SetLoad:
    """``/set`` at ``rate`` per second, round-robin over the lights' colour temperatures, each
    value unique per light (a light gets the next value of :data:`CT_RANGE` each time)."""

    host: str
    port: int
    rate: float = 100.0
    portable: bool = False
    protocol: MQTTProtocolVersion = paho.MQTTv5
    sent: list[tuple[float, str, int]] = field(default_factory=list)
    """(``time.monotonic()`` just before it was published, light, value), once acknowledged:
    one published after a renewal arrived elsewhere reached the broker after that renewal."""
    failed: int = 0
    """Publishes the broker did not acknowledge (not in :attr:`sent`)."""

    async def run(self, stop: asyncio.Event) -> None:
        client = paho.Client(CallbackAPIVersion.VERSION2, protocol=self.protocol)
        connected = threading.Event()
        client.on_connect = lambda *_a: connected.set()
        client.connect(self.host, self.port)
        client.loop_start()
        try:
            await asyncio.to_thread(connected.wait, 10)
            count = 0
            start = time.monotonic()
            while not stop.is_set():
                light = LIGHTS[count % len(LIGHTS)]
                value = CT_RANGE[(count // len(LIGHTS) + 1) % len(CT_RANGE)]
                topic = f"aqara/{level(light, self.portable)}/1/{CT[0]}/{CT[1]}/set"
                sending = time.monotonic()
                info = client.publish(topic, str(value), 1)
                try:
                    await asyncio.to_thread(info.wait_for_publish, 5)
                except (RuntimeError, ValueError):
                    self.failed += 1  # this client lost the broker (a cluster node went away)
                else:
                    if info.is_published():
                        self.sent.append((sending, light, value))
                count += 1
                delay = start + count / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
        finally:
            client.disconnect()
            client.loop_stop()


async def change_hub(hub: StudioSimulator, stop: asyncio.Event, rate: float = 500.0) -> int:
    """Change the meters' power at ``rate`` per second (batches every 10 ms); the count."""
    count = 0
    start = time.monotonic()
    while not stop.is_set():
        due = int((time.monotonic() - start) * rate)
        while count < due:
            meter = METERS[count % len(METERS)]
            hub.set_value(meter, 1, *POWER, (count // len(METERS)) % 4000)
            count += 1
        await asyncio.sleep(0.01)
    return count


def executions(hub: StudioSimulator, sets: SetLoad) -> Counter[int]:
    """How often the hub executed each /set of ``sets.sent`` (by its index there). A light's
    value comes round again every 348 /set of it (70 s at 100 /s): an execution is the latest
    /set of its light and value sent before it (a few seconds of slack for clocks read on
    different threads)."""
    sends: dict[tuple[str, int], list[tuple[float, int]]] = {}
    for index, (at, light, value) in enumerate(sets.sent):
        sends.setdefault((light, value), []).append((at, index))
    counted: Counter[int] = Counter()
    for execution in hub.executions:
        for item in execution.items:
            if not isinstance(item, dict) or (item.get("functionCode"),
                                              item.get("traitCode")) != CT:
                continue
            earlier = [index for at, index in sends.get((item["deviceId"], int(item["value"])), [])
                       if at <= execution.at + EXECUTION_SLACK]
            if earlier:
                counted[earlier[-1]] += 1
    return counted


def expected_state(hub: StudioSimulator, portable: bool = False) -> dict[str, str]:
    """The retained payload each driven trait must end with: the hub's value now."""
    state = {f"aqara/{level(light, portable)}/1/{CT[0]}/{CT[1]}": str(hub.get_value(light, 1, *CT))
             for light in LIGHTS}
    state.update({f"aqara/{level(meter, portable)}/1/{POWER[0]}/{POWER[1]}":
                  str(hub.get_value(meter, 1, *POWER)) for meter in METERS})
    return state


def compare(retained: dict[str, bytes], expected: dict[str, str]) -> tuple[list[str], list[str]]:
    """(missing topics, stale topics with what they hold)."""
    missing = [t for t in expected if t not in retained]
    stale = [f"{t}: {retained[t]!r} != {v!r}" for t, v in expected.items()
             if t in retained and retained[t].decode() != v]
    return missing, stale
