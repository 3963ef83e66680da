"""PackedTexts: a compressed read-only mapping of texts."""

from __future__ import annotations

from bridge.outputs.discovery import discovery_changes
from bridge.packed import PackedTexts


def test_reads_back_what_was_stored() -> None:
    texts = {"a/config": '{"x": 1, "name": "Küche"}', "b/config": "", "c": "x" * 5000}
    packed = PackedTexts(texts)
    assert dict(packed) == texts
    assert len(packed) == 3
    assert "b/config" in packed
    assert "missing" not in packed
    assert packed.get("missing") is None


def test_works_as_the_previous_discovery() -> None:
    before = {"t/config": '{"cmps": {"a": {"p": "sensor", "x": 1}}}'}
    after = {"t/config": '{"cmps": {"b": {"p": "sensor", "x": 2}}}'}
    assert discovery_changes(PackedTexts(before), after) == discovery_changes(before, after)
    assert discovery_changes(PackedTexts(after), after) == {}
