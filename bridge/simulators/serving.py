"""Running a simulator from the command line until it is cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol, TypeVar


class Servable(Protocol):
    """What every simulator offers the ``simulate`` command."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def start_random_changes(self, rate: float, seed: int | None = None) -> None: ...


S = TypeVar("S", bound=Servable)


async def serve_forever(sim: S, banner: Callable[[S], str], rate: float, seed: int | None,
                        on_ready: Callable[[S], None] | None = None) -> None:
    """Start ``sim``, print ``banner(sim)``, change values at ``rate`` per second (if > 0),
    and run until cancelled; the simulator is stopped however this ends."""
    await sim.start()
    try:
        print(banner(sim), flush=True)
        if rate > 0:
            sim.start_random_changes(rate, seed)
        if on_ready is not None:
            on_ready(sim)
        await asyncio.Event().wait()
    finally:
        await sim.stop()
