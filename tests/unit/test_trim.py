"""Returning freed heap memory to the OS."""

from __future__ import annotations

import sys

import pytest

from bridge.trim import release_free_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_release_free_memory_works_on_glibc() -> None:
    garbage = [bytes(4096) for _ in range(2000)]
    del garbage
    assert release_free_memory() is True
