"""An in-process MQTT 3.1.1 broker (amqtt) for ``aqara-mqtt demo`` on a machine without one."""

from __future__ import annotations

import logging
import socket
from typing import Any

from amqtt.broker import Broker


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on host:port."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def pick_port(host: str, preferred: int) -> int:
    """``preferred`` when free, else any free port."""
    if port_is_free(host, preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EmbeddedBroker:
    """amqtt listening on ``host:port`` (anonymous, loopback only by default)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host = host
        self.port = port
        config: dict[str, Any] = {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            "sys_interval": 0,
            "auth": {"allow-anonymous": True, "plugins": ["auth_anonymous"]},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                        {"allow_anonymous": True}},
            "topic-check": {"enabled": False},
        }
        self._broker = Broker(config)
        for name in ("amqtt", "transitions"):  # its shutdown logs cancellations as errors
            logging.getLogger(name).setLevel(logging.CRITICAL)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def start(self) -> None:
        """Start listening."""
        await self._broker.start()

    async def stop(self) -> None:
        """Stop and close every client connection."""
        await self._broker.shutdown()
