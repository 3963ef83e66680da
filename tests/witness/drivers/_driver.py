"""What every witness driver shares: loopback only, and a JSON-lines request/answer loop.

Drivers run in ``.venv-sdk`` (the vendors' SDKs pin dependencies the bridge cannot share), as
subprocesses of the witness tests: one JSON object per stdin line (``{"op": ..., ...}``), one
JSON answer per stdout line (``{"ok": true, "result": ...}`` or ``{"ok": false, "error": ...}``).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import sys
from collections.abc import Callable
from typing import Any

_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: Any) -> Any:
    """The SDKs hard-code vendor hosts: whatever they try, nothing leaves this machine."""
    host = address[0] if isinstance(address, tuple) else address
    if self.family in (socket.AF_INET, socket.AF_INET6) and not ipaddress.ip_address(
            host).is_loopback:
        raise ConnectionRefusedError(f"witness drivers talk to loopback only, not {host}")
    return _connect(self, address)


def serve(ops: dict[str, Callable[[dict[str, Any]], Any]]) -> None:
    """Answer requests until stdin closes; SDK prints go to stderr, not into the answers."""
    socket.socket.connect = _loopback_only
    answers = sys.stdout
    sys.stdout = sys.stderr
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = {"ok": True, "result": ops[request.pop("op")](request)}
        except Exception as exc:  # an SDK failure is an answer, not the driver's end
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        answers.write(json.dumps(answer, default=str) + "\n")
        answers.flush()
