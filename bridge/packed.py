"""A read-only mapping of texts kept compressed: for large caches that are rarely read back.

Home Assistant discovery remembers every config it published (≈2 KB of JSON per device) only to
compare it with the next one; compressed, a large home's cache takes a fraction of the memory.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping


class PackedTexts(Mapping[str, str]):
    """``{key: text}`` stored zlib-compressed; reads decompress."""

    __slots__ = ("_packed",)

    def __init__(self, texts: Mapping[str, str]) -> None:
        self._packed = {key: zlib.compress(text.encode(), 1) for key, text in texts.items()}

    def __getitem__(self, key: str) -> str:
        return zlib.decompress(self._packed[key]).decode()

    def __iter__(self) -> Iterator[str]:
        return iter(self._packed)

    def __len__(self) -> int:
        return len(self._packed)
