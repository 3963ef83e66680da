"""The vendors' own SDKs as witnesses: each runs in ``.venv-sdk`` (created by scripts/test.sh)
as a driver subprocess (``drivers/<name>_driver.py``) that the tests drive one JSON line at a
time, while the simulator under test serves it on 127.0.0.1 in the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SDK_PYTHON = ROOT / ".venv-sdk" / "bin" / "python"
DRIVERS = Path(__file__).parent / "drivers"
ANSWER_TIMEOUT = 60.0


class Driver:
    """One SDK driver process; ``await driver("op", ...)`` is its answer ``{"ok", ...}``."""

    def __init__(self, name: str, log: Path) -> None:
        self.name = name
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Driver:
        with self.log.open("wb") as stderr:
            self.proc = await asyncio.create_subprocess_exec(
                str(SDK_PYTHON), str(DRIVERS / f"{self.name}_driver.py"),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr)
        return self

    async def __call__(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc is not None
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), ANSWER_TIMEOUT)
        if not line:
            raise AssertionError(f"the {self.name} driver died:\n{self.log.read_text()[-3000:]}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def ok(self, op: str, **args: Any) -> Any:
        """The result of an op that must succeed."""
        answer = await self(op, **args)
        assert answer["ok"], (op, answer)
        return answer["result"]

    async def stop(self) -> None:
        if self.proc is None:
            return
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture
async def driver(tmp_path: Path) -> AsyncIterator[Callable[[str], Awaitable[Driver]]]:
    """Start drivers by name; all are stopped at the end."""
    if not SDK_PYTHON.exists():
        pytest.skip("the vendors' SDKs are not installed: scripts/test.sh creates .venv-sdk")
    started: list[Driver] = []

    async def start(name: str) -> Driver:
        proc = await Driver(name, tmp_path / f"{name}.log").start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        with contextlib.suppress(ProcessLookupError):
            await proc.stop()
