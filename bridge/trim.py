"""Give the heap memory freed after a burst back to the operating system (glibc's malloc_trim).

A start-up or a broker reconnect publishes a large home all at once; the messages waiting for
the broker are freed once sent, but glibc keeps the freed pages unless asked to return them.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from typing import Any


def _load_libc() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    with contextlib.suppress(OSError):
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "malloc_trim") else None
    return None


_LIBC = _load_libc()


def release_free_memory() -> bool:
    """Return free heap pages to the OS; False where the C library cannot (not glibc)."""
    if _LIBC is None:
        return False
    _LIBC.malloc_trim(0)
    return True
