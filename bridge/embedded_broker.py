"""The demo's own MQTT broker: Mosquitto when it is installed, else rumqttd embedded by iotcore.

Both listen on loopback only and keep nothing on disk. Mosquitto serves MQTT 3.1.1 and 5 on one
port. rumqttd (the ``demo`` extra, ``pip install '.[demo]'``) serves one protocol per port, and
the demo gives it MQTT 5 only: rumqttd 0.20 panics in a 3.1.1 connection that is sent a message
carrying MQTT 5 properties (a ``mosquitto_rr`` request, a response with correlation data), so a
3.1.1 listener beside the MQTT 5 one would drop 3.1.1 subscribers. Its clients therefore need
``-V mqttv5`` (:attr:`client_flags`).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from iotcore import Broker

STARTUP_TIMEOUT = 10.0
"""Seconds a broker gets to start listening."""


class BrokerUnavailable(Exception):
    """The demo cannot start a broker (the message is one line for the user)."""


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on host:port."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str) -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pick_port(host: str, preferred: int) -> int:
    """``preferred`` when free, else any free port."""
    return preferred if port_is_free(host, preferred) else free_port(host)


def mosquitto_binary() -> str | None:
    """The Mosquitto broker's executable, when installed (Debian puts it in /usr/sbin)."""
    found = shutil.which("mosquitto")
    if found is None and Path("/usr/sbin/mosquitto").is_file():
        found = "/usr/sbin/mosquitto"
    return found


async def wait_listening(host: str, port: int, process: asyncio.subprocess.Process) -> None:
    """Return once host:port accepts connections; raise when ``process`` exits first."""
    async with asyncio.timeout(STARTUP_TIMEOUT):
        while True:
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(host, port)
                writer.close()
                return
            if process.returncode is not None:
                raise BrokerUnavailable(f"Mosquitto exited with code {process.returncode} at "
                                        f"start (port {port} taken?)")
            await asyncio.sleep(0.05)


class DemoBroker(Protocol):
    """What the demo needs to know about the broker it started."""

    name: str
    host: str
    port: int
    protocols: str
    """``MQTT 3.1.1 and 5`` or ``MQTT 5 only``."""
    client_flags: str
    """What mosquitto_sub/pub need to talk to it (``-V mqttv5 `` or nothing)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class MosquittoBroker:
    """A private Mosquitto process on ``host:port`` with a generated minimal config."""

    name = "Mosquitto"
    protocols = "MQTT 3.1.1 and 5"
    client_flags = ""

    def __init__(self, binary: str, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.binary = binary
        self.host = host
        self.port = port
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start it and wait until it accepts connections."""
        self._dir = tempfile.TemporaryDirectory(prefix="aqara-mqtt-demo-")
        conf = Path(self._dir.name) / "mosquitto.conf"
        conf.write_text(f"listener {self.port} {self.host}\nallow_anonymous true\n"
                        "persistence false\nlog_dest none\n")
        self._process = await asyncio.create_subprocess_exec(
            self.binary, "-c", str(conf), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            await wait_listening(self.host, self.port, self._process)
        except TimeoutError:
            await self.stop()
            raise BrokerUnavailable(f"Mosquitto did not listen on port {self.port} within "
                                    f"{STARTUP_TIMEOUT:.0f} s") from None
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop the process and remove its config."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


RUMQTTD_ROUTER = """\
id = 0

[router]
id = 0
max_connections = 1000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
"""

RUMQTTD_LISTENER = {
    "5": """
[v5.1]
name = "mqtt-5"
listen = "{host}:{port}"
next_connection_delay_ms = 1
    [v5.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = {max_payload}
    max_inflight_count = 100
""",
    "3.1.1": """
[v4.1]
name = "mqtt-3.1.1"
listen = "{host}:{port}"
next_connection_delay_ms = 1
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = {max_payload}
    max_inflight_count = 100
    dynamic_filters = true
""",
}


class EmbeddedBroker:
    """rumqttd (through iotcore) on ``host:port``, speaking one MQTT ``version``: "5" for the
    demo, "3.1.1" (the default) as a 3.1.1-only broker for tests.

    iotcore runs rumqttd in a child process that exits with ours, because rumqttd has no
    shutdown call of its own."""

    name = "built-in rumqttd broker"

    def __init__(self, host: str = "127.0.0.1", port: int = 1883,
                 version: str = "3.1.1") -> None:
        self.host = host
        self.port = port
        self.version = version
        self.protocols = f"MQTT {version} only"
        self.client_flags = "-V mqttv5 " if version == "5" else ""
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._broker: Broker | None = None

    async def start(self) -> None:
        """Start listening."""
        try:
            from iotcore import Broker
        except ImportError:
            raise BrokerUnavailable(
                "no MQTT broker for the demo: install Mosquitto (Debian: apt install mosquitto) "
                "or the built-in one with pip install '.[demo]', or pass --mqtt URL") from None
        self._dir = tempfile.TemporaryDirectory(prefix="aqara-mqtt-demo-")
        config = Path(self._dir.name) / "rumqttd.toml"
        listener = RUMQTTD_LISTENER[self.version].format(host=self.host, port=self.port,
                                                         max_payload=64 << 20)
        config.write_text(RUMQTTD_ROUTER + listener)
        broker = Broker(config_path=str(config))
        self._broker = broker
        try:
            await asyncio.to_thread(broker.start, STARTUP_TIMEOUT)
        except (OSError, RuntimeError) as exc:
            await self.stop()
            raise BrokerUnavailable(f"the built-in broker did not start: {exc}") from None

    async def stop(self) -> None:
        """Stop the broker process and release the port."""
        broker, self._broker = self._broker, None
        if broker is not None:
            await asyncio.to_thread(broker.stop)
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


def demo_broker(kind: str, host: str, preferred: int) -> DemoBroker:
    """The broker the demo starts: ``mosquitto``, ``embedded``, or ``auto`` (Mosquitto when
    installed, else the embedded one), on ``preferred`` or the next free port."""
    binary = mosquitto_binary()
    if kind == "mosquitto" and binary is None:
        raise BrokerUnavailable("--broker mosquitto: Mosquitto is not installed "
                                "(Debian: apt install mosquitto)")
    port = pick_port(host, preferred)
    if binary is not None and kind != "embedded":
        return MosquittoBroker(binary, host, port)
    return EmbeddedBroker(host, port, version="5")
