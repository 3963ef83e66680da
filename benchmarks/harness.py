"""Processes the benchmarks run: a hub simulator, the bridge, and Mosquitto's C subscriber.

Each part runs in its own process so that none of them steals the bridge's GIL; the bridge is
the real ``aqara-mqtt run`` with a generated config. Counting is done by ``mosquitto_sub`` (C),
which stamps every message with its own clock (``-F %U``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

TOKEN = "bench-token"


def wait_port(port: int, timeout: float = 120) -> None:
    """Block until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f} s")


@contextlib.contextmanager
def simulator(port: int, devices: int, rate: float = 0.0, traits: int | None = None,
              seed: int = 1) -> Iterator[subprocess.Popen[bytes]]:
    """The Studio simulator with N synthetic devices in its own process (:mod:`benchmarks.hub`:
    ``simulate studio`` that keeps any backlog for a slow client instead of dropping it)."""
    cmd = [sys.executable, "-m", "benchmarks.hub", str(port), str(devices), str(rate), str(seed)]
    if traits is not None:
        cmd.append(str(traits))
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate a child process (kill it when it does not go within 10 s)."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def bridge_config(broker_port: int, hub_port: int, *, discovery: bool = True,
                  extra: str = "") -> str:
    """A daemon config for the benchmark hub and broker (QoS 1, discovery on by default)."""
    return (f"mqtt: {{url: 'mqtt://127.0.0.1:{broker_port}', qos: 1}}\n"
            f"backends: [{{type: studio, url: 'ws://127.0.0.1:{hub_port}', token: {TOKEN}}}]\n"
            f"homeassistant: {{enabled: {'true' if discovery else 'false'}}}\n"
            f"log: {{level: error}}\n{extra}")


@contextlib.contextmanager
def bridge(config: str) -> Iterator[subprocess.Popen[bytes]]:
    """``aqara-mqtt run`` with ``config`` in its own process."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(config)
        process = subprocess.Popen([sys.executable, "-m", "bridge", "run", "-c", str(path)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield process
        finally:
            stop(process)


class CSubscriber:
    """``mosquitto_sub`` in its own process; a reader thread notes each message's own stamp."""

    def __init__(self, port: int, topics: list[str], qos: int = 1, *,
                 show_topic: bool = False) -> None:
        binary = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
        fmt = "%U %t %p" if show_topic else "%U"
        cmd = [binary, "-h", "127.0.0.1", "-p", str(port), "-q", str(qos), "-F", fmt]
        for topic in topics:
            cmd += ["-t", topic]
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.watch: dict[str, float] = {}
        """Payload → arrival time, for messages whose payload starts with ``watch_prefix``."""
        self.watch_prefix: str | None = None
        self._show_topic = show_topic
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        time.sleep(0.3)  # the C client connects and subscribes well within this

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            stamp_text, _, rest = line.partition(" ")
            try:
                stamp = float(stamp_text)
            except ValueError:
                continue  # a payload with a newline: its continuation line
            if not self.count:
                self.first = stamp
            self.count += 1
            self.last = stamp
            if self.watch_prefix is not None and self._show_topic:
                payload = rest.partition(" ")[2]
                if payload.startswith(self.watch_prefix):
                    self.watch[payload] = stamp

    def quiet_for(self, seconds: float) -> bool:
        """True when nothing arrived in the last ``seconds`` (and something did before)."""
        return self.count > 0 and time.time() - self.last >= seconds

    def close(self) -> None:
        stop(self.process)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """Resident set size of a process in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def settle(sub: CSubscriber, pid: int, at_least: int, quiet: float = 2.0,
           timeout: float = 240) -> None:
    """Wait until the subscriber got ``at_least`` messages, then nothing for ``quiet`` s, and
    the process is idle (on a loaded machine a bridge still waiting for its hub's snapshot is
    idle and quiet too)."""
    deadline = time.monotonic() + timeout
    cpu = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = cpu_seconds(pid)
        idle = now - cpu < 0.05
        cpu = now
        if idle and sub.count >= at_least and sub.quiet_for(quiet):
            return
    raise RuntimeError("the bridge did not settle")


def percentile(values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def median(values: list[float]) -> float:
    """The median (NaN for no values)."""
    return statistics.median(values) if values else float("nan")
