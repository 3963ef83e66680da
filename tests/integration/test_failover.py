"""An active/standby pair for one Studio hub, as two ``python -m bridge run`` processes on one
Mosquitto, under load: 100 ``/set`` per second (each a value the hub sees once at most) and 500
hub changes per second. The active is killed (SIGKILL), paused past its lease (SIGSTOP), stopped
cleanly (SIGTERM) or cut off from its hub; each time the other member takes over within the
bound, no ``/set`` is executed twice, every ``/set`` sent after the takeover is executed once,
the old active sends nothing to the hub after it, and the broker ends holding the hub's truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import statistics
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from bridge.cli import health_check
from bridge.config import parse_config
from bridge.simulators.studio import StudioSimulator
from tests.mosquitto import Mosquitto, free_port
from tests.mqtt_probe import MqttProbe, synced
from tests.pair import (
    TOKEN,
    LeaseLog,
    LeaseSeen,
    Member,
    SetLoad,
    change_hub,
    compare,
    executions,
    expected_state,
    member_config,
    pair_home,
    started,
)

pytestmark = pytest.mark.integration

BOUND = 10.0
"""Seconds: the issue's aim for a takeover with default settings (keepalive 4, lease 6 s)."""
QUIET = 0.5
"""Seconds before a kill in which a /set may die with the active (not yet at the hub)."""


@pytest.fixture
async def hub() -> AsyncIterator[StudioSimulator]:
    simulator = StudioSimulator(TOKEN, pair_home())
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def lease(mosquitto: Mosquitto) -> AsyncIterator[LeaseLog]:
    log = LeaseLog("127.0.0.1", mosquitto.port)
    yield log
    log.close()


@pytest.fixture
async def probe(mosquitto: Mosquitto) -> AsyncIterator[MqttProbe]:
    client = await MqttProbe(mosquitto.port, ["aqara/bridge/#"]).start()
    yield client
    client.stop()


def members(mosquitto: Mosquitto, hub: StudioSimulator, workdir: Path,
            names: Sequence[str] = ("a", "b")) -> list[Member]:
    return [Member(name, member_config(mosquitto.url, hub.url, name), workdir)
            for name in names]


async def standing_by(probe: MqttProbe, name: str, timeout: float = 20) -> None:
    """Until ``name`` says on its retained standby topic that it stands by."""
    topic = f"aqara/bridge/standby/{name}"

    def ready() -> bool:
        seen = probe.last.get(topic)
        return seen is not None and seen.payload.startswith(b"{")

    await probe.wait_for(ready, timeout)


@contextlib.asynccontextmanager
async def loaded(mosquitto: Mosquitto, hub: StudioSimulator) -> AsyncIterator[SetLoad]:
    """100 /set and 500 hub changes per second for the duration of the block."""
    stop = asyncio.Event()
    sets = SetLoad("127.0.0.1", mosquitto.port)
    tasks = [asyncio.create_task(sets.run(stop)), asyncio.create_task(change_hub(hub, stop))]
    try:
        yield sets
    finally:
        stop.set()
        for task in tasks:
            await task


async def retained_state(mosquitto: Mosquitto) -> dict[str, bytes]:
    fresh = await MqttProbe(mosquitto.port, ["aqara/#", "homeassistant/#"]).start()
    try:
        await synced(fresh)
        return {t: m.payload for t, m in fresh.last.items() if m.retain}
    finally:
        fresh.stop()


async def converged(mosquitto: Mosquitto, hub: StudioSimulator, timeout: float = 20) -> None:
    """The broker holds the hub's truth for every driven trait: 0 missing, 0 stale."""
    deadline = time.monotonic() + timeout
    while True:
        missing, stale = compare(await retained_state(mosquitto), expected_state(hub))
        if not missing and not stale:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"missing {missing[:5]} ({len(missing)}), "
                                 f"stale {stale[:5]} ({len(stale)})")
        await asyncio.sleep(0.2)  # the last changes may still be on their way


async def all_executed(hub: StudioSimulator, sets: SetLoad,
                       windows: list[tuple[float, float]], timeout: float = 10) -> None:
    """Every /set sent inside one of ``windows`` (an active member's time) reached the hub
    exactly once; none anywhere more than once."""
    due = {index: at - start for index, (at, _light, _value) in enumerate(sets.sent)
           for start, end in windows if start <= at < end}
    assert len(due) > 50, "too little load to judge"
    zero = windows[0][0]
    deadline = time.monotonic() + timeout
    while True:
        counts = executions(hub, sets)
        doubled = [index for index, n in counts.items() if n > 1]
        assert doubled == [], "executed more than once: " + ", ".join(
            f"{sets.sent[i][1:]} sent at {sets.sent[i][0] - zero:.2f} s" for i in doubled[:10])
        lost = [index for index in due if counts[index] != 1]
        if not lost:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{len(lost)} of {len(due)} /set sent while a member was active never reached "
                "the hub: " + ", ".join(f"{sets.sent[i][1:]} {due[i]:.2f} s into its window"
                                        for i in lost[:10]))
        await asyncio.sleep(0.1)


def ha_configs(retained: dict[str, bytes]) -> dict[str, bytes]:
    return {t: p for t, p in retained.items() if t.startswith("homeassistant/")}


async def test_a_killed_active_is_replaced_within_seconds_and_no_set_runs_twice(
        mosquitto: Mosquitto, hub: StudioSimulator, lease: LeaseLog, probe: MqttProbe,
        tmp_path: Path) -> None:
    """SIGKILL the active three times under load (the killed one comes back as the standby)."""
    pair = members(mosquitto, hub, tmp_path)
    async with started(pair, now=1):
        first = await lease.active()
        assert first.member == "a"
        await pair[1].start()
        await standing_by(probe, "b")
        configured = ha_configs(await retained_state(mosquitto))
        assert len(configured) == 40  # every device announced once
        took: list[float] = []
        windows: list[tuple[float, float]] = []
        current: LeaseSeen = first
        async with loaded(mosquitto, hub) as sets:
            for _ in range(3):
                await asyncio.sleep(2)  # the load runs against this active for a while
                active = next(m for m in pair if m.name == current.member)
                killed = time.monotonic()
                windows.append((current.at, killed - QUIET))
                await active.kill()
                current = await lease.active(other_than=active.name, above=current.generation)
                took.append(current.at - killed)
                await active.start()  # back, as the standby
                await standing_by(probe, active.name)
            await asyncio.sleep(2)
            windows.append((current.at, time.monotonic() - QUIET))
        print(f"takeover after SIGKILL: {', '.join(f'{t:.2f}' for t in took)} s "
              f"(median {statistics.median(took):.2f} s); {len(sets.sent)} /set sent")
        assert max(took) < BOUND
        await all_executed(hub, sets, windows)
        await converged(mosquitto, hub)
        assert ha_configs(await retained_state(mosquitto)) == configured
        assert probe.last["aqara/bridge/state"].text == "online"


async def test_a_paused_active_sends_nothing_to_the_hub_after_the_takeover(
        mosquitto: Mosquitto, hub: StudioSimulator, lease: LeaseLog, probe: MqttProbe,
        tmp_path: Path) -> None:
    """SIGSTOP for longer than the lease, then SIGCONT with /set still queued in the process:
    it learns it was replaced before it sends anything, and stands by."""
    a, b = members(mosquitto, hub, tmp_path)
    async with started([a, b], now=1):
        first = await lease.active()
        await b.start()
        await standing_by(probe, "b")
        async with loaded(mosquitto, hub) as sets:
            await asyncio.sleep(2)
            old = hub.executions[-1].connection  # the active's hub connection
            a.signal(signal.SIGSTOP)
            paused = time.monotonic()
            try:
                takeover = await lease.active(other_than="a", above=first.generation)
                await asyncio.sleep(paused + 15 - time.monotonic())  # 15 s > the 6 s lease
            finally:
                a.signal(signal.SIGCONT)
            await standing_by(probe, "a")
            await asyncio.sleep(2)
            after = [e for e in hub.executions if e.at >= takeover.at]
            windows = [(first.at, paused - QUIET), (takeover.at, time.monotonic() - QUIET)]
        print(f"takeover after SIGSTOP: {takeover.at - paused:.2f} s")
        assert takeover.at - paused < BOUND
        assert after, "the new active executed nothing"
        assert {e.connection for e in after} == {after[0].connection} != {old}
        assert a.said("this member is no longer active; standing by")
        await all_executed(hub, sets, windows)
        await converged(mosquitto, hub)


async def test_a_clean_stop_hands_over_at_once_and_health_names_the_roles(
        mosquitto: Mosquitto, hub: StudioSimulator, lease: LeaseLog, probe: MqttProbe,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = members(mosquitto, hub, tmp_path)
    async with started([a, b], now=1):
        first = await lease.active()
        await b.start()
        await standing_by(probe, "b")
        info = await probe.wait_for(lambda: (m := probe.last.get("aqara/bridge/info")) and (
            m.json()["failover"]["standbys"] and m.json()))
        assert info["failover"]["member"] == "a"
        assert info["failover"]["standbys"] == [{"member": "b", "hub_reachable": True}]
        config_a = parse_config(a.config_path.read_text(), "a.yaml")
        config_b = parse_config(b.config_path.read_text(), "b.yaml")
        assert await asyncio.to_thread(health_check, config_a, 10) == 0
        assert await asyncio.to_thread(health_check, config_b, 10) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == "ok: hub home connected"
        assert lines[1] == "ok (standby): member b stands by; active member a"
        stopped = time.monotonic()
        assert await a.stop() == 0
        took = (await lease.active(other_than="a", above=first.generation)).at - stopped
        with capsys.disabled():
            print(f"takeover after SIGTERM: {took:.2f} s")
        assert took < 3  # the lease was released: no waiting out a term
        await converged(mosquitto, hub)
        assert await asyncio.to_thread(health_check, config_a, 3) == 3
        assert "member a is neither active nor standing by" in capsys.readouterr().out


class Cable:
    """A TCP relay from a port of its own to the hub: cut it, and one member loses its hub."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def plug(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._pipes:
            writer.transport.abort()
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self._pipes |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


async def test_an_active_that_loses_its_hub_hands_over_to_a_standby_that_reaches_it(
        mosquitto: Mosquitto, hub: StudioSimulator, lease: LeaseLog, probe: MqttProbe,
        tmp_path: Path) -> None:
    assert hub.port is not None
    cable = Cable(hub.port)
    await cable.plug()
    a = Member("a", member_config(mosquitto.url, f"ws://127.0.0.1:{cable.port}", "a"), tmp_path)
    b = Member("b", member_config(mosquitto.url, hub.url, "b"), tmp_path)
    async with started([a, b], now=1):
        first = await lease.active()
        await b.start()
        await standing_by(probe, "b")
        await cable.cut()
        cut = time.monotonic()
        takeover = await lease.active(other_than="a", above=first.generation, timeout=30)
        print(f"hand-over after the hub was lost: {takeover.at - cut:.2f} s")
        assert takeover.at - cut < BOUND  # a term without the hub, then a release
        handed = a.said("this member is no longer active; standing by")
        assert "handed over to b" in handed[0]["reason"]
        await standing_by(probe, "a")
        standby = json.loads(probe.last["aqara/bridge/standby/a"].payload)
        assert standby["hub_reachable"] is False
        await converged(mosquitto, hub)
