"""Bounded JSON parsing for everything that arrives from MQTT or from a hub.

``json.loads`` has no size limit and recurses once per nesting level, so a deeply nested
document raises ``RecursionError`` (not a ``ValueError``) in the parser or in any recursive code
that walks the result later. :func:`loads` refuses both with :class:`JsonLimitError`, a
``ValueError`` whose message says which limit was hit, so existing handlers answer it.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64
"""Deepest nesting accepted (the deepest real document, an automation script, needs ~20)."""

MQTT_MAX_BYTES = 1024 * 1024
"""Largest JSON payload accepted from MQTT (requests, ``/set`` documents)."""

HUB_MAX_BYTES = 64 * 1024 * 1024
"""Largest JSON document accepted from a hub (the Studio WebSocket frame limit)."""


class JsonLimitError(ValueError):
    """The document is larger or more deeply nested than allowed."""


def loads(data: str | bytes | bytearray, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``data``; ValueError when it is not JSON, JsonLimitError when it is too big/deep."""
    if len(data) > max_bytes:
        raise JsonLimitError(f"larger than {max_bytes} bytes ({len(data)})")
    too_deep = f"nested deeper than {max_depth} levels"
    try:
        value = json.loads(data)
    except RecursionError:
        raise JsonLimitError(too_deep) from None
    if _opening_brackets(data) > max_depth and _depth_exceeds(value, max_depth):
        raise JsonLimitError(too_deep)
    return value


def _opening_brackets(data: str | bytes | bytearray) -> int:
    """An upper bound of the nesting depth, counted at C speed (most documents stop here)."""
    if isinstance(data, str):
        return data.count("{") + data.count("[")
    return data.count(b"{") + data.count(b"[")


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether containers nest deeper than ``limit`` (iterative: no recursion to exhaust)."""
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False
