"""Studio backend flow control against the simulator: read budget, pacing, TCP_NODELAY."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from bridge.backends.studio import client as studio
from bridge.backends.studio.client import StudioBackend
from bridge.model import Event, Snapshot, TraitChanged
from bridge.simulators.sample_home import synthetic_devices
from bridge.simulators.studio import StudioSimulator
from tests.integration.conftest import TOKEN

pytestmark = pytest.mark.integration

FLOOD = 1000


class Sink:
    """Collects events; awaitable on a condition."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    def changes(self) -> int:
        return sum(isinstance(e, TraitChanged) for e in self.events)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


@contextlib.asynccontextmanager
async def connected(sim: StudioSimulator, backend: StudioBackend) -> AsyncIterator[Sink]:
    sink = Sink()
    task = asyncio.create_task(backend.run(sink))
    try:
        await sink.wait_for(lambda: any(isinstance(e, Snapshot) for e in sink.events))
        yield sink
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def sim() -> AsyncIterator[StudioSimulator]:
    simulator = StudioSimulator(TOKEN, synthetic_devices(50, seed=3))
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


def flood(sim: StudioSimulator) -> None:
    """FLOOD pushes in one synchronous burst (they reach the bridge back to back)."""
    pool = [(d.device_id, e, f, t.code) for d in sim.devices if d.online
            for e, f, t in d.iter_traits() if t.type == "NUMBER" and t.readable]
    for n in range(FLOOD):
        device, endpoint, function, trait = pool[n % len(pool)]
        sim.set_value(device, endpoint, function, trait, n)


async def test_reader_yields_after_its_budget_and_waits_for_pace(sim: StudioSimulator) -> None:
    backend = StudioBackend("home", sim.ws_endpoint, TOKEN)
    gate = asyncio.Event()
    entered = asyncio.Event()
    seen_at_pace: list[int] = []

    async with connected(sim, backend) as sink:
        async def pace() -> None:
            seen_at_pace.append(sink.changes())
            entered.set()
            await gate.wait()

        backend.pace = pace
        flood(sim)
        await asyncio.wait_for(entered.wait(), 20)
        # the reader stopped after at most one budget of frames, with more waiting
        assert seen_at_pace[0] < studio.READ_BUDGET
        assert sink.changes() < FLOOD
        gate.set()
        await sink.wait_for(lambda: sink.changes() == FLOOD)
        assert backend.turns_yielded >= FLOOD // studio.READ_BUDGET


async def test_websocket_has_tcp_nodelay(sim: StudioSimulator) -> None:
    backend = StudioBackend("home", sim.ws_endpoint, TOKEN)
    async with connected(sim, backend):
        assert backend._ws is not None
        sock = backend._ws.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
