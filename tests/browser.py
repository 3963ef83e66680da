"""A real browser for the web page's tests: Debian's Chromium, headless, driven by playwright-core
(tests/node/browser.mjs) over a line protocol. Calls block, so async tests use :meth:`Browser.do`,
which runs them off the event loop (the daemon under test runs on it)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

NODE_DIR = Path(__file__).parent / "node"
CHROMIUM = "/usr/bin/chromium"


class BrowserError(AssertionError):
    """A browser command failed (a selector not found in time, a navigation error...)."""


class Browser:
    """One Chromium for many tests (starting it costs seconds); ``fresh()`` between them."""

    def __init__(self) -> None:
        node = shutil.which("node")
        assert node is not None, "Node.js is needed (scripts/test.sh installs it)"
        assert Path(CHROMIUM).exists(), f"{CHROMIUM} is needed (apt install chromium)"
        self._process = subprocess.Popen(
            [node, str(NODE_DIR / "browser.mjs")], cwd=NODE_DIR, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={"CHROMIUM": CHROMIUM,
                                                                 "PATH": "/usr/bin:/bin"})
        self._lock = threading.Lock()

    def call(self, op: str, **args: Any) -> Any:
        """Run one command; its result (raises BrowserError with the browser's reason)."""
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        with self._lock:
            self._process.stdin.write(json.dumps({"op": op, **args}) + "\n")
            self._process.stdin.flush()
            line = self._process.stdout.readline()
        if not line:
            raise BrowserError(f"the browser exited ({self._process.poll()})")
        answer = json.loads(line)
        if "error" in answer:
            raise BrowserError(f"{op} {args}: {answer['error']}")
        return answer["ok"]

    async def do(self, op: str, **args: Any) -> Any:
        """:meth:`call` without blocking the event loop."""
        return await asyncio.to_thread(self.call, op, **args)

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
