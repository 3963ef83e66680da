"""The Studio client's buffer of pushes during a snapshot: coalesced per trait, bounded."""

from __future__ import annotations

from typing import Any

from bridge.backends.studio.push_buffer import PushBuffer


def push(device: str, trait: str, value: Any, function: str = "Output") -> dict[str, Any]:
    return {"type": "TraitValueUpdate", "data": {
        "deviceId": device, "endpointId": 1, "functionCode": function, "traitCode": trait,
        "value": value}}


def values(messages: list[dict[str, Any]]) -> list[Any]:
    return [m["data"]["value"] if "value" in m["data"] else m["data"]["eventType"]
            for m in messages]


def test_a_traits_latest_push_replaces_the_earlier_ones_in_order_of_the_latest_changes() -> None:
    buffer = PushBuffer(limit=10)
    for message in (push("a", "OnOff", True), push("b", "OnOff", 1), push("a", "OnOff", False)):
        buffer.add(message)
    assert len(buffer) == 2
    assert values(buffer.drain()) == [1, False]
    assert len(buffer) == 0


def test_a_push_of_several_traits_is_kept_trait_by_trait() -> None:
    buffer = PushBuffer(limit=10)
    first, second = push("a", "OnOff", True)["data"], push("a", "Level", 5)["data"]
    buffer.add({"type": "TraitValueUpdate", "data": [first, second]})
    buffer.add(push("a", "OnOff", False))
    kept = buffer.drain()
    assert [m["data"] for m in kept] == [second, push("a", "OnOff", False)["data"]]
    assert all(m["type"] == "TraitValueUpdate" for m in kept)


def test_device_events_and_presses_are_never_coalesced() -> None:
    buffer = PushBuffer(limit=10)
    event = {"type": "objectEvent", "data": {"eventType": "DEVICE_OFFLINE", "deviceId": "a"}}
    press = push("r", "MultiPressComplete", 2, function="Switch")
    for message in (event, press, event, press):
        buffer.add(message)
    assert len(buffer) == 4


def test_past_its_limit_the_buffer_overflows_and_keeps_nothing() -> None:
    buffer = PushBuffer(limit=2)
    for index in range(3):
        buffer.add(push("a", f"T{index}", index))
    assert buffer.overflowed
    assert len(buffer) == 0
    buffer.add(push("a", "T9", 9))
    assert len(buffer) == 0  # moot: the snapshot is taken again


def test_a_repeated_trait_does_not_count_towards_the_limit() -> None:
    buffer = PushBuffer(limit=2)
    for value in range(1000):
        buffer.add(push("a", "Level", value))
        buffer.add(push("b", "Level", value))
    assert not buffer.overflowed
    assert values(buffer.drain()) == [999, 999]


def test_without_a_limit_nothing_overflows() -> None:
    buffer = PushBuffer(limit=None)
    for index in range(5000):
        buffer.add(push(f"d{index % 50}", f"T{index % 7}", index))
    assert not buffer.overflowed
    assert len(buffer) == 50 * 7
