"""Every log line of the process, awaitable (the ``logs`` fixture of tests/conftest.py)."""

from __future__ import annotations

import asyncio
import logging


class LogWatch(logging.Handler):
    """Every log line of the process, awaitable: some faults are reported only in the log
    (a lost or refused connection, a skipped device)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.levels: list[int] = []
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.levels.append(record.levelno)
        self.lines.append(record.getMessage())
        self._loop.call_soon_threadsafe(self._changed.set)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def count(self, text: str, level: int = logging.WARNING) -> int:
        """Lines containing ``text`` logged at ``level`` or above."""
        return sum(1 for line, lvl in zip(self.lines, self.levels, strict=True)
                   if lvl >= level and text in line)

    async def wait_for(self, text: str, after: int = 0, timeout: float = 10.0) -> str:
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines[after:]:
                    if text in line:
                        return line
                self._changed.clear()
                await self._changed.wait()
