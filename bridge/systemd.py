"""systemd's notify protocol (``Type=notify``, ``WatchdogSec=``), spoken directly.

The protocol is one datagram of ``KEY=value`` lines to the unix socket named by
``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace); see sd_notify(3). It is a
few lines, so no library is needed. Without ``$NOTIFY_SOCKET`` (not under systemd) every call
does nothing.
"""

from __future__ import annotations

import os
import socket

from bridge.logsetup import get_logger

log = get_logger("bridge.systemd")


class Notifier:
    """Sends state changes to systemd when it asked for them."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + path[1:] if path.startswith("@") else path
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        enabled = usec.isdigit() and int(usec) > 0 and mine
        self.watchdog_interval = int(usec) / 1e6 / 2 if enabled else None
        """Seconds between ``WATCHDOG=1`` pings (half of ``WatchdogSec=``), or None."""
        self.ready_sent = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, **fields: str) -> None:
        """One datagram, e.g. ``send(READY="1", STATUS="ok")``; failures are logged, not raised."""
        if not self.address:
            return
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self.address)
        except OSError as exc:
            log.warning("cannot notify systemd", reason=exc.strerror or str(exc))

    def ready(self, status: str) -> None:
        """``READY=1`` (once) with a status line; later calls only update the status."""
        if self.ready_sent:
            self.send(STATUS=status)
        else:
            self.ready_sent = True
            self.send(READY="1", STATUS=status)

    def status(self, status: str) -> None:
        """Update the line ``systemctl status`` shows."""
        self.send(STATUS=status)

    def watchdog(self) -> None:
        """Tell the watchdog the event loop is alive."""
        self.send(WATCHDOG="1")

    def stopping(self) -> None:
        """Tell systemd the stop is ours (``STOPPING=1``)."""
        self.send(STOPPING="1", STATUS="stopping")
