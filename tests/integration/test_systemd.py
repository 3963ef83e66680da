"""The systemd unit and the notify protocol, tested the way systemd talks to the daemon: a real
unix datagram socket as ``$NOTIFY_SOCKET``, the daemon as a subprocess, the unit checked by
``systemd-analyze``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.simulators.studio import StudioSimulator
from bridge.systemd import Notifier
from tests.integration.test_cli import CLI, WRONG_TOKEN, config_text, write
from tests.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

UNIT = Path(__file__).parents[2] / "systemd" / "aqara-mqtt.service"


class NotifySocket:
    """What systemd listens on: datagrams of KEY=value lines."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    async def until(self, key: str, value: str | None = None,
                    timeout: float = 30) -> dict[str, str]:
        """The next message (from now) that sets ``key`` (to ``value``)."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while True:
                data = await loop.sock_recv(self.sock, 4096)
                fields = dict(line.split("=", 1) for line in data.decode().splitlines())
                self.messages.append(fields)
                if key in fields and (value is None or fields[key] == value):
                    return fields


@contextlib.asynccontextmanager
async def daemon_under_systemd(tmp_path: Path, config: str,
                               watchdog_usec: int) -> AsyncIterator[
                                   tuple[asyncio.subprocess.Process, NotifySocket]]:
    notify = NotifySocket(str(tmp_path / "notify"))
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"),
           "WATCHDOG_USEC": str(watchdog_usec)}
    env.pop("WATCHDOG_PID", None)
    process = await asyncio.create_subprocess_exec(
        *CLI, "run", "-c", config, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        yield process, notify
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        notify.sock.close()


async def test_ready_after_the_first_snapshot_then_watchdog_then_stopping(
        tmp_path: Path, mosquitto: Mosquitto, hub: StudioSimulator) -> None:
    config = write(tmp_path, "c.yaml", config_text(mosquitto.url, hub.url))
    async with daemon_under_systemd(tmp_path, config, watchdog_usec=400_000) as (process,
                                                                                 notify):
        ready = await notify.until("READY", "1")
        assert ready["STATUS"] == "ok: hub home connected"
        assert "GetAllDeviceInfoRequest" in [m.get("type") for m in hub.received]
        assert not any("READY" in m for m in notify.messages[:-1])  # READY once, at the end
        for _ in range(3):  # every WatchdogSec/2 = 0.2 s
            await notify.until("WATCHDOG", "1", timeout=10)
        process.send_signal(signal.SIGTERM)
        await notify.until("STOPPING", "1")
        assert await asyncio.wait_for(process.wait(), 30) == 0


async def test_a_refused_token_is_ready_but_degraded(
        tmp_path: Path, mosquitto: Mosquitto, hub: StudioSimulator) -> None:
    config = write(tmp_path, "c.yaml", config_text(mosquitto.url, hub.url, token=WRONG_TOKEN))
    async with daemon_under_systemd(tmp_path, config, watchdog_usec=0) as (_process, notify):
        ready = await notify.until("READY", "1")
        assert ready["STATUS"].startswith("degraded: hub home: authentication failed")
        assert WRONG_TOKEN not in str(notify.messages)
        assert not any("WATCHDOG" in m for m in notify.messages)  # WatchdogSec not set


async def test_the_abstract_socket_namespace() -> None:
    name = f"aqara-mqtt-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(10)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "30000000",
                             "WATCHDOG_PID": "1"})
        assert notifier.watchdog_interval is None  # the watchdog is another process's
        notifier.ready("ok: hub home connected")
        notifier.ready("degraded: hub home: hub unreachable")  # READY is sent once
        assert sock.recv(4096) == b"READY=1\nSTATUS=ok: hub home connected"
        assert sock.recv(4096) == b"STATUS=degraded: hub home: hub unreachable"
    finally:
        sock.close()


def test_nothing_is_sent_outside_systemd() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    notifier.ready("ok")  # no socket, no error


# ---- the unit file -----------------------------------------------------------------------------


def unit_settings() -> list[tuple[str, str]]:
    return [(key.strip(), value.strip()) for line in UNIT.read_text().splitlines()
            if line and not line.startswith(("#", "[")) and "=" in line
            for key, value in [line.split("=", 1)]]


def test_unit_readiness_state_and_no_restart_loop() -> None:
    settings = dict(unit_settings())
    assert settings["Type"] == "notify"
    assert int(settings["WatchdogSec"]) > 0
    assert settings["StateDirectory"] == "aqara-mqtt"
    assert "ExecStartPre" not in settings  # its failure would restart in a loop
    assert settings["Restart"] == "on-failure"
    assert "2" in settings["RestartPreventExitStatus"].split()  # `run`: broken config
    assert settings["ExecStart"].startswith("/opt/aqara-mqtt/bin/aqara-mqtt run -c ")


def test_unit_install_steps_match_the_unit() -> None:
    header = [line[1:].strip() for line in UNIT.read_text().splitlines()
              if line.startswith("#   ")]
    settings = dict(unit_settings())
    assert "/usr/bin/python3 -m venv /opt/aqara-mqtt" in header
    assert "/opt/aqara-mqtt/bin/pip install ." in header  # from the clone, never an index
    assert any(step.split()[-1] == settings["User"] for step in header
               if step.startswith("useradd"))
    config = settings["ExecStart"].split(" -c ")[1]
    assert any(step.endswith(f"config.example.yaml {config}") for step in header)
    assert any(settings["EnvironmentFile"].lstrip("-") in step for step in header)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze not installed (scripts/test.sh installs it)")
def test_unit_is_hardened_to_2_5_or_better() -> None:
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(UNIT)],
                            capture_output=True, text=True, timeout=60, check=False)
    match = re.search(r"Overall exposure level for aqara-mqtt.service: (\d+\.\d+)",
                      result.stdout)
    assert match is not None, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.5
