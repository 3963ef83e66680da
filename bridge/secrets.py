"""Keeping secrets out of output: a process-wide redactor of registered secret values.

Register every token, password and key as soon as it is known (``register_secret``); anything
logged passes through :func:`redact`/:func:`redact_obj`, which replace each occurrence with
``***``. Substring matching also covers ``Bearer <token>``, URLs and exception messages. Values of
keys whose *name* looks secret (``token``, ``password``, ...) are masked whether registered or not.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "REDACTOR",
    "Redactor",
    "is_secret_key",
    "mask_secret_keys",
    "redact",
    "redact_obj",
    "register_secret",
    "secret_key_values",
]

MASK = "***"
"""What a secret is replaced with."""

MIN_SECRET_LENGTH = 4
"""Shorter strings are not registered: masking them would garble ordinary text."""

_EXACT_KEYS = frozenset(
    {"key", "sign", "signature", "pass", "pwd", "auth", "authorization", "cookie", "set_cookie"}
)
_KEY_PARTS = (
    "token",
    "password",
    "passwd",
    "secret",
    "app_key",
    "appkey",
    "api_key",
    "apikey",
    "access_key",
    "accesskey",
    "private_key",
    "privatekey",
    "authorization",
    "credential",
)


def is_secret_key(name: object) -> bool:
    """True when a mapping key's name says its value is secret (``token``, ``app_key``, ...).

    ``key``, ``sign`` and a few other short words only match exactly, so ``monkey`` or
    ``signal`` do not. Case and ``-``/``_`` spelling do not matter (``appKey``, ``X-Api-Key``).
    """
    if not isinstance(name, str):
        return False
    lowered = name.lower().replace("-", "_")
    if lowered in _EXACT_KEYS:
        return True
    return any(part in lowered for part in _KEY_PARTS)


class Redactor:
    """Replaces every registered secret with ``***``. Thread-safe; cheap when nothing matches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def register(self, secret: str | None) -> None:
        """Remember ``secret`` (and its URL- and JSON-escaped forms); short values are ignored."""
        if not secret:
            return
        secret = secret.strip()
        if len(secret) < MIN_SECRET_LENGTH:
            return
        forms = {secret, quote(secret, safe=""), json.dumps(secret)[1:-1]}
        if secret[:7].lower() == "bearer " and len(secret[7:].strip()) >= MIN_SECRET_LENGTH:
            forms.add(secret[7:].strip())
        with self._lock:
            if forms <= self._secrets:
                return
            self._secrets |= forms
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(s) for s in ordered))

    def register_many(self, secrets: Iterable[str | None]) -> None:
        """:meth:`register` each of ``secrets``."""
        for secret in secrets:
            self.register(secret)

    def clear(self) -> None:
        """Forget every registered secret (for tests)."""
        with self._lock:
            self._secrets.clear()
            self._pattern = None

    def __len__(self) -> int:
        return len(self._secrets)

    def redact(self, text: str) -> str:
        """``text`` with every registered secret replaced by ``***``."""
        pattern = self._pattern
        if pattern is None:
            return text
        return pattern.sub(MASK, text)

    def redact_obj(self, obj: Any, *, by_key: bool = True) -> Any:
        """A copy of ``obj`` with secrets masked in every string of nested dicts/lists/tuples.

        With ``by_key`` (the default) the values of secret-looking keys are masked too (see
        :func:`is_secret_key`). Other objects are returned unchanged.
        """
        if isinstance(obj, str):
            return self.redact(obj)
        if isinstance(obj, Mapping):
            return {
                k: (
                    _mask_value(v)
                    if by_key and is_secret_key(k)
                    else self.redact_obj(v, by_key=by_key)
                )
                for k, v in obj.items()
            }
        if isinstance(obj, list):
            return [self.redact_obj(v, by_key=by_key) for v in obj]
        if isinstance(obj, tuple):
            return tuple(self.redact_obj(v, by_key=by_key) for v in obj)
        return obj


def _mask_value(value: Any) -> Any:
    """``***`` for a secret key's value; None and booleans say nothing and are kept."""
    if value is None or isinstance(value, bool) or value == "":
        return value
    return MASK


def mask_secret_keys(obj: Any) -> Any:
    """A copy of ``obj`` with the values of secret-looking keys masked (no registration needed)."""
    if isinstance(obj, Mapping):
        return {
            k: _mask_value(v) if is_secret_key(k) else mask_secret_keys(v) for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [mask_secret_keys(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(mask_secret_keys(v) for v in obj)
    return obj


def secret_key_values(obj: Any) -> list[str]:
    """Every string held under a secret-looking key in nested dicts/lists (e.g. raw config)."""
    found: list[str] = []
    stack = [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            for key, value in node.items():
                if isinstance(value, str) and is_secret_key(key):
                    found.append(value)
                else:
                    stack.append(value)
        elif isinstance(node, list | tuple):
            stack.extend(node)
    return found


REDACTOR = Redactor()
"""The process-wide redactor used by logging."""


def register_secret(secret: str | None) -> None:
    """Register ``secret`` with the process-wide :data:`REDACTOR`."""
    REDACTOR.register(secret)


def redact(text: str) -> str:
    """Mask registered secrets in ``text`` (process-wide :data:`REDACTOR`)."""
    return REDACTOR.redact(text)


def redact_obj(obj: Any) -> Any:
    """Mask registered secrets and secret-keyed values in ``obj`` (process-wide redactor)."""
    return REDACTOR.redact_obj(obj)
