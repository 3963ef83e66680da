"""A real Mosquitto broker on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Below Linux's ephemeral range (32768-60999): a port the kernel handed out would be free now but
# could be taken as the source port of any outgoing connection before a slow broker binds it (seen
# in CI: RabbitMQ's MQTT listener, 5 s after the pick, failed with eaddrinuse).
_PICKABLE = range(20000, 32768)
_handed_out: set[tuple[str, int]] = set()


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port at ``address`` that nothing listens on right now, outside the ephemeral range
    and never handed out twice by this process."""
    for _ in range(1000):
        port = random.choice(_PICKABLE)
        if (address, port) in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((address, port))
            except OSError:
                continue
        _handed_out.add((address, port))
        return port
    raise RuntimeError(f"no free port in {_PICKABLE} at {address}")


@dataclass
class Mosquitto:
    """A running broker; ``restart`` keeps the port so clients can reconnect."""

    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    extra_config: str = ""
    """More mosquitto.conf lines: options of the listener (TLS files) or global ones (acl_file)."""
    nodelay: bool = False
    """``set_tcp_nodelay true``: the broker sends without waiting for delayed ACKs (benchmarks)."""

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 0\nmax_inflight_messages 0\nlog_dest none\n"
            + ("set_tcp_nodelay true\n" if self.nodelay else "")
            + self.extra_config
        )
        self.process = subprocess.Popen([binary, "-c", str(conf)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", self.port), timeout=0.2
            ):
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}")
            time.sleep(0.02)
        raise RuntimeError("mosquitto did not start listening within 10 s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def running_mosquitto(extra_config: str = "", nodelay: bool = False) -> Iterator[Mosquitto]:
    """Start Mosquitto on a free port for the duration of the block."""
    with tempfile.TemporaryDirectory(prefix="mosq-") as tmp:
        broker = Mosquitto(port=free_port(), workdir=Path(tmp), extra_config=extra_config,
                           nodelay=nodelay)
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()
