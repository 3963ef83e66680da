"""The command line as a user runs it: ``python -m bridge ...`` in a subprocess."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect

from bridge import __version__
from bridge.app import Daemon
from bridge.cli import build_parser
from bridge.config import parse_config
from bridge.simulators.studio import StudioSimulator
from tests.integration.conftest import TOKEN, bridge_config, running
from tests.mosquitto import Mosquitto, free_port
from tests.mqtt_probe import MqttProbe, synced

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "bridge"]
WRONG_TOKEN = "definitely-not-the-token-0b7e"


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion (for commands that need nothing running in this process)."""
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


async def acli(*args: str, timeout: float = 30) -> tuple[int, str, str]:
    """Run the CLI while this event loop keeps serving (simulators, daemons in this process)."""
    process = await asyncio.create_subprocess_exec(
        *CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


class Running:
    """A long-running CLI command: stdout read line by line with timeouts, always cleaned up."""

    def __init__(self, process: asyncio.subprocess.Process, stderr: Path) -> None:
        self.process = process
        self.stderr_path = stderr
        self.lines: list[str] = []

    async def line_with(self, text: str, timeout: float = 30) -> str:
        """The next stdout line containing ``text`` (earlier lines are kept in ``lines``)."""
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.process.stdout.readline()
                if not raw:
                    raise AssertionError(
                        f"exited ({self.process.returncode}) before printing {text!r}; "
                        f"stdout {self.lines}, stderr {self.stderr()[-2000:]}")
                line = raw.decode().rstrip("\n")
                self.lines.append(line)
                if text in line:
                    return line

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    async def interrupt(self, timeout: float = 30) -> int:
        """Ctrl+C, and the exit code (a hang fails with what the process logged)."""
        self.process.send_signal(signal.SIGINT)
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"still running {timeout} s after Ctrl+C; "
                                 f"stderr {self.stderr()[-2000:]}") from None


@contextlib.asynccontextmanager
async def started(*args: str) -> AsyncIterator[Running]:
    with tempfile.TemporaryDirectory(prefix="cli-") as tmp:
        stderr_path = Path(tmp) / "stderr"
        with stderr_path.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                *CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=stderr)
        running_cli = Running(process, stderr_path)
        try:
            yield running_cli
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def config_text(mqtt_url: str, hub_url: str, token: str = TOKEN, extra: str = "") -> str:
    return (f'mqtt: {{url: "{mqtt_url}", base_topic: aqara, keepalive: 10}}\n'
            f'backends:\n  - {{type: studio, name: home, url: "{hub_url}", token: "{token}", '
            f"request_timeout: 5}}\n{extra}")


# ---- --version and config errors ----------------------------------------------------------------


def test_version() -> None:
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"aqara-mqtt {__version__}"


def test_no_command_is_a_usage_error() -> None:
    result = cli()
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["run"], ["check"], ["check", "--config-only"],
                                     ["health"]])
def test_missing_config_file(tmp_path: Path, command: list[str]) -> None:
    missing = str(tmp_path / "missing.yaml")
    result = cli(*command, "-c", missing)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines == [f"aqara-mqtt: {missing}: file not found"]


BROKEN = {
    "bad-yaml": ("mqtt: {url: [unclosed\n", "broken.yaml"),
    "not-a-mapping": ("- just\n- a list\n", "mapping"),
    "bad-values": ('mqtt: {url: "ftp://x", qos: 7}\nbackends: []\n', "more problems"),
    "unknown-key": ("backends: []\nsurprise: 1\n", "surprise: unknown key"),
    "empty": ("", "empty"),
    "missing-env": ("backends:\n  - type: studio\n    url: ws://h\n"
                    "    token: ${NO_SUCH_ENV_VAR_X1}\n", "${NO_SUCH_ENV_VAR_X1} is not set"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_config_is_one_line_and_no_traceback(tmp_path: Path, case: str) -> None:
    text, expected = BROKEN[case]
    path = write(tmp_path, "broken.yaml", text)
    for command in (["run"], ["check", "--config-only"]):
        result = cli(*command, "-c", path)
        assert result.returncode == 2, result
        assert result.stdout == ""
        assert "Traceback" not in result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("aqara-mqtt: ")
        assert path in lines[0]
        assert expected in lines[0], lines[0]


def test_config_errors_never_show_secrets(tmp_path: Path) -> None:
    password, token = "mqtt-pass-4bd1e", "studio-token-771a0"
    path = write(tmp_path, "secret.yaml",
                 f'mqtt: {{url: "mqtt://u:{password}@127.0.0.1:1", qos: 9}}\n'
                 f"backends:\n  - {{type: studio, url: 12, token: {token}}}\n")
    result = cli("run", "-c", path)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert password not in result.stderr + result.stdout
    assert token not in result.stderr + result.stdout


def test_check_config_only_accepts_a_valid_config(tmp_path: Path) -> None:
    path = write(tmp_path, "ok.yaml", config_text("mqtt://127.0.0.1:1", "ws://127.0.0.1:1"))
    result = cli("check", "--config-only", "-c", path)
    assert result.returncode == 0
    assert result.stdout == "config: ok\n"
    assert result.stderr == ""


def test_config_example_passes_check_config_only_with_the_documented_environment() -> None:
    example = Path(__file__).parents[2] / "config.example.yaml"
    text = example.read_text()
    lines = text.splitlines()
    documented = lines[lines.index("# As shipped it needs these environment variables "
                                   "(the secrets it names as ${...}):") + 1]
    names = documented.lstrip("# ").split()
    used = {line.split("${")[1].split("}")[0] for line in lines
            if "${" in line and not line.lstrip().startswith("#")}
    assert set(names) == {name for name in used if ":-" not in name}
    env = {k: v for k, v in os.environ.items() if k not in names}
    result = subprocess.run([*CLI, "check", "--config-only", "-c", str(example)],
                            capture_output=True, text=True, timeout=30, check=False,
                            env={**env, **{name: "value-of-" + name for name in names}})
    assert (result.returncode, result.stdout, result.stderr) == (0, "config: ok\n", "")
    without = subprocess.run([*CLI, "check", "--config-only", "-c", str(example)],
                             capture_output=True, text=True, timeout=30, check=False, env=env)
    assert without.returncode == 2
    assert "${MQTT_PASSWORD} is not set" in without.stderr


# ---- check against real services ---------------------------------------------------------------


async def test_check_reaches_broker_and_hub(tmp_path: Path, mosquitto: Mosquitto,
                                            hub: StudioSimulator) -> None:
    path = write(tmp_path, "c.yaml", config_text(mosquitto.url, hub.url))
    code, out, err = await acli("check", "-c", path)
    assert "Traceback" not in err
    assert out.splitlines() == ["config: ok", f"broker 127.0.0.1:{mosquitto.port}: ok",
                                "backend home (studio): ok, 24 devices"]
    assert code == 0


async def test_check_with_a_wrong_token_names_authentication(
        tmp_path: Path, mosquitto: Mosquitto, hub: StudioSimulator) -> None:
    path = write(tmp_path, "c.yaml", config_text(mosquitto.url, hub.url, token=WRONG_TOKEN))
    code, out, err = await acli("check", "-c", path)
    assert f"broker 127.0.0.1:{mosquitto.port}: ok" in out.splitlines()
    (failed,) = [line for line in out.splitlines() if "FAILED" in line]
    assert failed.startswith("backend home (studio): FAILED: ")
    assert "authentication" in failed
    assert code == 1
    assert WRONG_TOKEN not in out + err


async def test_check_reports_every_unreachable_part_without_secrets(
        tmp_path: Path, hub: StudioSimulator) -> None:
    closed = free_port()
    path = write(tmp_path, "c.yaml", config_text(f"mqtt://127.0.0.1:{closed}", hub.url,
                                                 token=WRONG_TOKEN))
    code, out, err = await acli("check", "-c", path)
    assert code == 1
    assert "Traceback" not in err
    lines = out.splitlines()
    assert lines[0] == "config: ok"
    assert lines[1].startswith(f"broker 127.0.0.1:{closed}: FAILED: cannot reach broker")
    assert lines[2].startswith("backend home (studio): FAILED: authentication failed")
    assert len(lines) == 3
    assert WRONG_TOKEN not in out + err
    assert hub.received == []  # the hub refused the token at the WebSocket upgrade


async def test_check_reports_an_unreachable_hub(tmp_path: Path) -> None:
    closed_broker, closed_hub = free_port(), free_port()
    path = write(tmp_path, "c.yaml", config_text(f"mqtt://127.0.0.1:{closed_broker}",
                                                 f"ws://127.0.0.1:{closed_hub}"))
    code, out, err = await acli("check", "-c", path)
    assert code == 1
    assert "Traceback" not in err
    (hub_line,) = [line for line in out.splitlines() if line.startswith("backend home")]
    assert "FAILED: hub unreachable: connection refused" in hub_line  # as Troubleshooting says


# ---- check never disturbs the daemon ------------------------------------------------------------


async def test_check_uses_its_own_client_id_and_leaves_the_daemon_alone(
        tmp_path: Path, mosquitto: Mosquitto, hub: StudioSimulator) -> None:
    fixed = ", client_id: aqara-mqtt"  # as in config.example.yaml
    path = write(tmp_path, "c.yaml", config_text(mosquitto.url, hub.url).replace(
        "keepalive: 10", "keepalive: 10" + fixed))
    probe = await MqttProbe(mosquitto.port, ["aqara/bridge/state", "aqara/_sync/#"]).start()
    try:
        async with running(Daemon(bridge_config(mosquitto, hub, mqtt_extra=fixed))) as daemon:
            await probe.value("aqara/bridge/state", "online")
            for _ in range(2):
                code, out, _ = await acli("check", "-c", path)
                assert f"broker 127.0.0.1:{mosquitto.port}: ok" in out.splitlines()
                assert code == 0
            await synced(probe)
            # a second client with the daemon's id would have made the broker drop the daemon
            # and publish its will ("offline")
            assert [m.text for m in probe.on("aqara/bridge/state")] == ["online"]
            assert daemon.mqtt.connected
    finally:
        probe.stop()


# ---- health ------------------------------------------------------------------------------------


async def test_health_without_a_bridge(tmp_path: Path, mosquitto: Mosquitto) -> None:
    path = write(tmp_path, "h.yaml", config_text(mosquitto.url, "ws://127.0.0.1:1"))
    code, out, err = await acli("health", "-c", path, "--timeout", "1")
    assert (code, out.strip()) == (
        3, "offline: aqara/bridge/state is not set (is the bridge running with this broker?)")
    assert "Traceback" not in err


async def test_health_follows_the_bridge_state(tmp_path: Path, mosquitto: Mosquitto,
                                               hub: StudioSimulator) -> None:
    path = write(tmp_path, "h.yaml", config_text(mosquitto.url, hub.url))
    probe = await MqttProbe(mosquitto.port, ["aqara/bridge/#"]).start()
    try:
        async with running(Daemon(bridge_config(mosquitto, hub))):
            await probe.wait_for(lambda: (m := probe.last.get("aqara/bridge/info"))
                                 and m.json()["health"]["state"] == "ok", 30)
            code, out, _ = await acli("health", "-c", path, "--timeout", "10")
            assert (code, out.strip()) == (0, "ok: hub home connected")
        await probe.value("aqara/bridge/state", "offline")
    finally:
        probe.stop()
    code, out, _ = await acli("health", "-c", path, "--timeout", "10")
    assert (code, out.strip()) == (3, "offline: aqara/bridge/state is offline")


async def degraded_info(probe: MqttProbe, hub_state: str) -> dict[str, Any]:
    """The bridge/info document once it reports the hub in ``hub_state``."""
    message = await probe.wait_for(
        lambda: (m := probe.last.get("aqara/bridge/info"))
        and m.json()["health"]["hubs"].get("home") == hub_state and m, 30)
    info: dict[str, Any] = message.json()
    return info


async def test_health_degraded_when_the_hub_refuses_the_token(
        tmp_path: Path, mosquitto: Mosquitto, hub: StudioSimulator) -> None:
    path = write(tmp_path, "h.yaml", config_text(mosquitto.url, hub.url, token=WRONG_TOKEN))
    probe = await MqttProbe(mosquitto.port, ["aqara/bridge/#"]).start()
    try:
        config = bridge_config(mosquitto, hub, token=WRONG_TOKEN)
        async with running(Daemon(config)):
            info = await degraded_info(probe, "auth_failed")
            # the process runs (a bridge/info parked before the broker connected can arrive
            # before bridge/state)
            await probe.value("aqara/bridge/state", "online")
            assert info["health"]["state"] == "degraded"
            (problem,) = info["health"]["problems"]
            assert problem.startswith("hub home: authentication failed")
            code, out, err = await acli("health", "-c", path, "--timeout", "10")
            assert code == 1
            assert out.startswith("degraded: hub home: authentication failed"), out
            assert WRONG_TOKEN not in out + err + probe.last["aqara/bridge/info"].text
    finally:
        probe.stop()


async def test_health_degraded_when_the_hub_is_unreachable(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    closed = f"ws://127.0.0.1:{free_port()}"
    path = write(tmp_path, "h.yaml", config_text(mosquitto.url, closed))
    probe = await MqttProbe(mosquitto.port, ["aqara/bridge/#"]).start()
    try:
        config = parse_config(config_text(mosquitto.url, closed), "h.yaml")
        async with running(Daemon(config)):
            info = await degraded_info(probe, "unreachable")
            assert info["health"]["state"] == "degraded"
            code, out, _ = await acli("health", "-c", path, "--timeout", "10")
            assert code == 1
            assert out.startswith("degraded: hub home: hub unreachable"), out
    finally:
        probe.stop()


async def test_health_of_a_bridge_without_info_yet(tmp_path: Path, mosquitto: Mosquitto) -> None:
    path = write(tmp_path, "h.yaml", config_text(mosquitto.url, "ws://127.0.0.1:1"))
    probe = await MqttProbe(mosquitto.port, ["aqara/bridge/state"]).start()
    try:
        await probe.publish("aqara/bridge/state", "online", retain=True)
        code, out, _ = await acli("health", "-c", path, "--timeout", "1")
        assert (code, out.strip()) == (1, "starting: aqara/bridge/info is not set yet")
        await probe.publish("aqara/bridge/info", "not json", retain=True)
        code, out, _ = await acli("health", "-c", path, "--timeout", "5")
        assert (code, out.strip()) == (1, "degraded: aqara/bridge/info is not the bridge's JSON")
    finally:
        probe.stop()


async def test_health_without_a_broker(tmp_path: Path) -> None:
    port = free_port()
    path = write(tmp_path, "h.yaml", config_text(f"mqtt://127.0.0.1:{port}", "ws://127.0.0.1:1"))
    code, out, err = await acli("health", "-c", path, "--timeout", "1")
    assert code == 3
    assert out.strip() == (
        f"offline: cannot reach the broker at 127.0.0.1:{port}: Connection refused")
    assert "Traceback" not in err


# ---- simulate ------------------------------------------------------------------------------------


async def test_simulate_studio_serves_the_token() -> None:
    port = free_port()
    token = "sim-token-3c9d"
    async with started("simulate", "studio", "--port", str(port), "--token", token) as sim:
        line = await sim.line_with("Aqara Studio simulator", timeout=30)
        assert f"ws://127.0.0.1:{port}/open/ws" in line
        url = f"ws://127.0.0.1:{port}/open/ws"
        async with connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                           open_timeout=10) as ws:
            await ws.send(json.dumps({"type": "GetAllDeviceInfoRequest", "version": "v1",
                                      "msgId": "t-1"}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert reply["msgId"] == "t-1"
        assert reply.get("code", 0) in (0, "0")
        assert len(reply["data"]) == 28  # the sample home and the four event devices
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with connect(url, additional_headers={"Authorization": "Bearer wrong"},
                               open_timeout=10):
                pass
        assert refused.value.response.status_code == 401
        assert await sim.interrupt() == 0
        assert "Traceback" not in sim.stderr()


async def test_simulate_studio_synthetic_devices() -> None:
    port = free_port()
    async with started("simulate", "studio", "--port", str(port), "--token", "t",
                       "--devices", "5") as sim:
        line = await sim.line_with("Aqara Studio simulator", timeout=30)
        assert "(5 devices" in line
        async with connect(f"ws://127.0.0.1:{port}/open/ws",
                           additional_headers={"Authorization": "Bearer t"},
                           open_timeout=10) as ws:
            await ws.send(json.dumps({"type": "GetAllDeviceInfoRequest", "version": "v1",
                                      "msgId": "n"}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert len(reply["data"]) == 5


async def test_simulate_studio_heavy_devices() -> None:
    port = free_port()
    async with started("simulate", "studio", "--port", str(port), "--token", "t",
                       "--devices", "3", "--traits", "30") as sim:
        await sim.line_with("Aqara Studio simulator", timeout=30)
        async with connect(f"ws://127.0.0.1:{port}/open/ws",
                           additional_headers={"Authorization": "Bearer t"},
                           open_timeout=10) as ws:
            await ws.send(json.dumps({"type": "GetAllDeviceInfoRequest", "version": "v1",
                                      "msgId": "n"}))
            listing = json.loads(await asyncio.wait_for(ws.recv(), 10))["data"]
            ids = [d["deviceId"] for d in listing]
            await ws.send(json.dumps({"type": "GetDevicesRequest", "version": "v1",
                                      "msgId": "d", "data": {"deviceIds": ids}}))
            devices = json.loads(await asyncio.wait_for(ws.recv(), 10))["data"]
    assert [sum(len(f["traits"]) for e in d["endpoints"] for f in e["functions"])
            for d in devices] == [30, 30, 30]


async def test_simulate_studio_prints_its_token_and_a_config_that_works(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    token = "printed-token-71d2"
    async with started("simulate", "studio", "--port", "0", "--token", token) as sim:
        await sim.line_with("Aqara Studio simulator", timeout=30)
        assert await sim.line_with("token:") == f"  token: {token}"
        await sim.line_with("backend config:")
        entry = await sim.line_with("type: studio")  # pasted as it is, on the real port
        path = write(tmp_path, "sim.yaml", f'mqtt: {{url: "{mosquitto.url}"}}\n'
                                           f"backends:\n{entry}\n")
        code, out, err = await acli("check", "-c", path)
    assert (code, err) == (0, "")
    assert "backend studio (studio): ok, 28 devices" in out


def test_every_option_has_a_help_text_and_defaults_are_shown(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    silent = [f"{name} {a.option_strings[0]}" for name, sub in commands.choices.items()
              for a in sub._actions if a.option_strings and not a.help]
    assert silent == []
    shown = commands.choices["simulate"].format_help()
    for default in ("(default 127.0.0.1)", "(default 8080)", "(default demo-token)",
                    "(default: a new one each run)"):
        assert default in shown
    assert "(default 10)" in commands.choices["health"].format_help()


def test_simulate_traits_needs_devices() -> None:
    result = cli("simulate", "studio", "--traits", "30")
    assert result.returncode == 2
    assert "--traits needs" in result.stderr
    assert "Traceback" not in result.stderr
    assert cli("simulate", "tuya", "--devices", "3", "--traits", "30").returncode == 2


def test_console_script_is_the_same_program() -> None:
    script = Path(sys.executable).parent / "aqara-mqtt"
    if not script.exists():
        pytest.skip("the aqara-mqtt console script is not installed in this environment")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 0
    assert result.stdout.strip() == f"aqara-mqtt {__version__}"
