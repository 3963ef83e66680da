"""A real Mosquitto broker on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
