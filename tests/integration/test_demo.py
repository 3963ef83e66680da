"""``aqara-mqtt demo`` as a new user meets it: every command the banner prints, pasted verbatim
into a shell (mosquitto-clients), does what the banner says; with each broker the demo can use."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.integration.test_cli import CLI, Running, acli, started
from tests.mosquitto import free_port
from tests.mqtt_probe import MqttProbe

pytestmark = pytest.mark.integration

DINING = "aqara/dining_light/1/Output/OnOff"


class Shell:
    """A banner command running in ``sh -c`` exactly as printed; stdout collected line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            self.lines.append(raw.decode().rstrip("\n"))
            self._changed.set()

    async def line(self, pattern: str, after: int = 0, timeout: float = 30) -> str:
        """The first stdout line from index ``after`` on that matches the regex ``pattern``."""
        async with asyncio.timeout(timeout):
            while True:
                for text in self.lines[after:]:
                    if re.fullmatch(pattern, text):
                        return text
                self._changed.clear()
                await self._changed.wait()

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def shell(command: str) -> AsyncIterator[Shell]:
    process = await asyncio.create_subprocess_exec(
        "sh", "-c", f"exec {command}", stdout=asyncio.subprocess.PIPE)
    running = Shell(process)
    try:
        yield running
    finally:
        await running.stop()


async def run(command: str) -> str:
    """Run a banner command to completion; its stdout (it must succeed)."""
    process = await asyncio.create_subprocess_exec(
        "sh", "-c", command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, (command, err.decode())
    return out.decode()


def commands(demo: Running) -> dict[str, str]:
    """The banner's commands, keyed by the explanation line printed above each."""
    found: dict[str, str] = {}
    heading = ""
    for line in demo.lines:
        if line.startswith("  mosquitto_"):
            key = heading if heading not in found else f"{heading} (2)"
            found[key] = line.strip()
        elif line and not line.startswith(" "):
            heading = line
    return found


@contextlib.asynccontextmanager
async def banner(*args: str) -> AsyncIterator[tuple[Running, dict[str, str]]]:
    async with started("demo", "--rate", "0", *args) as demo:
        await demo.line_with("Press Ctrl+C to stop.", timeout=60)
        yield demo, commands(demo)
        assert await demo.interrupt() == 0
        assert "Traceback" not in demo.stderr()


@pytest.mark.parametrize("broker", ["auto", "embedded"])
async def test_every_banner_command_works_pasted_verbatim(broker: str) -> None:
    port = free_port()
    async with banner("--port", str(port), "--broker", broker) as (demo, printed):
        assert len(printed) == 9, printed
        flags = "-V mqttv5 " if broker == "embedded" else ""  # rumqttd: MQTT 5 only
        assert all(c.startswith(("mosquitto_rr ", f"mosquitto_sub {flags}-h",
                                 f"mosquitto_pub {flags}-h")) for c in printed.values())
        assert all(f"-h 127.0.0.1 -p {port} " in command for command in printed.values())
        assert not any(line.startswith("Port ") for line in demo.lines)  # no port note
        (page,) = [line.split()[-1] for line in demo.lines if line.startswith("  web page:")]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", page), page
        watch = printed["Watch everything (mosquitto-clients package):"]
        async with shell(watch) as everything, \
                shell(printed["Rejected writes are explained on:"]) as log, \
                shell(printed["Home Assistant discovery (point Home Assistant's MQTT "
                              "integration at this broker):"]) as ha:
            await everything.line(f"{DINING} true")
            async with aiohttp.ClientSession() as http:  # the printed web page, with the home
                async with http.get(page) as response:
                    assert "<title>aqara-mqtt</title>" in await response.text()
                async with http.get(page + "api/devices") as response:
                    assert len(await response.json()) == 24
            # only discovery configs, each a JSON document, one per sample device
            await ha.line(r"homeassistant/device/aqara_mqtt_lumi1_54ef44d1e6a0/config \{.*")
            assert all(line.startswith("homeassistant/") for line in ha.lines)

            off, on = (printed["Switch the dining light off, then on:"],
                       printed["Switch the dining light off, then on: (2)"])
            assert off.endswith("-m OFF")
            assert on.endswith("-m ON")
            for command, value in ((off, "false"), (on, "true"), (off, "false")):
                mark = len(everything.lines)
                await run(command)
                await everything.line(f"{DINING} {value}", after=mark)

            mark = len(everything.lines)
            await run(printed["Dim it and warm it up in one hub call:"])
            await everything.line("aqara/dining_light/1/LevelControl/CurrentLevel 30", mark)
            await everything.line("aqara/dining_light/1/ColorControl/ColorTemperature 400", mark)

            mark = len(everything.lines)
            await run(printed["Move the curtain:"])
            await everything.line("aqara/living_room_curtain/1/WindowCovering/"
                                  "TargetPositionPercentage 25", mark)

            answer = await run(printed["Ask the bridge (MQTT 5 request/response):"])
            assert answer.startswith('{"status": "ok"'), answer

            # the retained tree does not leak into the log subscription
            assert log.lines == []
            bad = watch.replace("mosquitto_sub", "mosquitto_pub").replace(
                "-t 'aqara/#' -v", f"-t '{DINING}/set' -m banana")
            await run(bad)
            entry = await log.line(r"aqara/bridge/log \{.*")
            assert "banana" in entry


async def test_the_printed_event_stream_shows_the_presses() -> None:
    # at 20 random changes a second the sample home's Bedside Button presses about once a second
    async with banner("--port", str(free_port()), "--rate", "20") as (_, printed), shell(
            printed["Button presses and gestures, never retained (the Bedside Button presses "
                    "now and then):"]) as events:
        press = await events.line(r"aqara/bridge/events \{.*")
        document = json.loads(press.split(" ", 1)[1])
        assert document["device_id"] == "lumi.158d0002f8e7d6"
        assert document["event_type"] in ("single", "double", "hold", "release")


async def test_a_taken_port_is_named_with_the_port_chosen_instead() -> None:
    taken = free_port()
    with listening(taken):
        async with banner("--port", str(taken)) as (demo, printed):
            (note,) = [line for line in demo.lines if line.startswith("Port ")]
            match = re.fullmatch(
                rf"Port {taken} is already in use on 127\.0\.0\.1 \(another broker\?\), so the "
                r"demo's broker listens on 127\.0\.0\.1:(\d+); the commands below use that\.",
                note)
            assert match is not None, note
            chosen = int(match.group(1))
            assert chosen != taken
            assert f"mqtt://127.0.0.1:{chosen} (Mosquitto, MQTT 3.1.1 and 5)" in "\n".join(
                demo.lines)
            watch = printed["Watch everything (mosquitto-clients package):"]
            assert shlex.split(watch)[1:5] == ["-h", "127.0.0.1", "-p", str(chosen)]
            probe = await MqttProbe(chosen, ["aqara/bridge/state"]).start()
            try:
                assert await probe.value("aqara/bridge/state") == "online"
            finally:
                probe.stop()


@contextlib.contextmanager
def listening(port: int) -> Iterator[None]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    try:
        yield
    finally:
        sock.close()


async def test_a_dead_broker_is_one_line() -> None:
    closed = free_port()
    code, out, err = await acli("demo", "--mqtt", f"mqtt://127.0.0.1:{closed}", timeout=60)
    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        f"aqara-mqtt: --mqtt mqtt://127.0.0.1:{closed}: cannot reach broker: Connection refused"]


def test_readme_starts_with_the_demo_from_the_clone() -> None:
    root = Path(__file__).parents[2]
    readme = (root / "README.md").read_text()
    first_block = readme.split("```sh\n", 1)[1].split("\n```", 1)[0]
    assert first_block == ("python3 -m venv .venv && .venv/bin/pip install '.[demo]' && "
                           ".venv/bin/aqara-mqtt demo")
    for path in [root / "README.md", root / "Dockerfile", *root.glob("docs/*.md"),
                 *root.glob("systemd/*")]:
        assert "pip install aqara-mqtt" not in path.read_text(), path  # it is on no index


async def test_without_the_demo_extra_the_embedded_broker_says_how_to_get_it(
        tmp_path: Path) -> None:
    blocker = tmp_path / "iotcore"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('not installed')\n")
    process = await asyncio.create_subprocess_exec(
        *CLI, "demo", "--broker", "embedded", "--port", str(free_port()),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(tmp_path)})
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert out == b""
    assert err.decode().splitlines() == [
        "aqara-mqtt: no MQTT broker for the demo: install Mosquitto (Debian: apt install "
        "mosquitto) or the built-in one with pip install '.[demo]', or pass --mqtt URL"]
