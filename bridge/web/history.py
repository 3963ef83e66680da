"""What a page opened later still shows: the last N events, log lines and answers, in memory.

Each kept message gets a sequence number, sent with the live copy too, so a page that loads the
history while its WebSocket already runs shows every message once. Long values are kept cut:
N entries cost a bounded amount of memory whatever the hubs send.
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from typing import Any

from bridge.web.feed import Message

HISTORY_LIMIT = 500
"""The default number of messages kept (``frontend.history``)."""

MAX_KEPT_CHARS = 200
"""Longest value text kept in the history (longer ones end in ``…``)."""


def brief(value: Any) -> Any:
    """``value``, or its text cut to :data:`MAX_KEPT_CHARS` when longer."""
    if isinstance(value, dict | list):
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
        return value if len(text) <= MAX_KEPT_CHARS else text[: MAX_KEPT_CHARS - 1] + "…"
    if isinstance(value, str) and len(value) > MAX_KEPT_CHARS:
        return value[: MAX_KEPT_CHARS - 1] + "…"
    return value


class History:
    """The last ``limit`` messages, oldest first."""

    def __init__(self, limit: int = HISTORY_LIMIT) -> None:
        self._kept: deque[Message] = deque(maxlen=limit)
        self._numbers = itertools.count(1)

    @property
    def limit(self) -> int:
        return self._kept.maxlen or 0

    def __len__(self) -> int:
        return len(self._kept)

    def add(self, message: Message) -> Message:
        """Number ``message`` and keep it (its ``value`` cut when long); the numbered message."""
        message["seq"] = next(self._numbers)
        value = message.get("value")
        kept = brief(value)
        self._kept.append(message if kept is value else {**message, "value": kept})
        return message

    def entries(self) -> list[Message]:
        """Every kept message, oldest first."""
        return list(self._kept)
