"""Write coalescing and batch chunking."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.coalesce import LatestQueue, WriteCoalescer, chunk
from bridge.model import TraitAddress, WriteItem


def item(device: str, trait: str = "OnOff", value: object = True, endpoint: int = 1) -> WriteItem:
    return WriteItem(TraitAddress(device, endpoint, "Output", trait), value)


def test_empty() -> None:
    coalescer: WriteCoalescer[str] = WriteCoalescer()
    assert len(coalescer) == 0
    assert coalescer.drain() == []


def test_first_add_asks_for_a_flush() -> None:
    coalescer: WriteCoalescer[str] = WriteCoalescer()
    assert coalescer.add(item("a"), "m1") is True
    assert coalescer.add(item("b"), "m2") is False
    assert coalescer.add(item("a", value=False), "m3") is False
    assert len(coalescer) == 2
    coalescer.drain()
    assert coalescer.add(item("a"), "m4") is True


def test_latest_value_wins_in_first_arrival_order_with_every_origin() -> None:
    coalescer: WriteCoalescer[int] = WriteCoalescer()
    coalescer.add(item("a", value=1), 1)
    coalescer.add(item("b", value=2), 2)
    coalescer.add(item("a", value=3), 3)
    coalescer.add(item("c", value=4), 4)
    coalescer.add(item("a", value=5), 5)
    assert coalescer.drain() == [
        (item("a", value=5), [1, 3, 5]),
        (item("b", value=2), [2]),
        (item("c", value=4), [4]),
    ]
    assert len(coalescer) == 0
    assert coalescer.drain() == []


def test_same_device_different_traits_are_kept_apart() -> None:
    coalescer: WriteCoalescer[str] = WriteCoalescer()
    coalescer.add(item("a", "OnOff"), "x")
    coalescer.add(item("a", "Level", 5), "x")
    coalescer.add(item("a", "OnOff", endpoint=2), "y")
    assert [i for i, _ in coalescer.drain()] == [
        item("a", "OnOff"), item("a", "Level", 5), item("a", "OnOff", endpoint=2),
    ]


adds = st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from(["T1", "T2"]), st.integers(0, 9)),
                max_size=30)


@given(adds)
def test_coalescer_matches_a_reference_model(ops: list[tuple[str, str, int]]) -> None:
    coalescer: WriteCoalescer[int] = WriteCoalescer()
    expected: dict[TraitAddress, tuple[WriteItem, list[int]]] = {}
    for n, (device, trait, value) in enumerate(ops):
        write = item(device, trait, value)
        scheduled = coalescer.add(write, n)
        assert scheduled == (not expected)
        old = expected.get(write.address)
        expected[write.address] = (write, ([] if old is None else old[1]) + [n])
        assert len(coalescer) == len(expected)
    assert coalescer.drain() == list(expected.values())


# ---- chunk ------------------------------------------------------------------------------------


def test_chunk_examples() -> None:
    items = [item("a", "1"), item("a", "2"), item("b", "1"), item("c", "1"), item("a", "3")]
    assert chunk(items, None, None) == [items]
    assert chunk([], 10, 10) == []
    assert chunk(items, 2, None) == [items[0:2], items[2:4], items[4:]]
    assert chunk(items, None, 2) == [items[0:3], items[3:]]
    assert chunk(items, None, 1) == [items[0:2], items[2:3], items[3:4], items[4:]]
    assert chunk(items, 3, 2) == [items[0:3], items[3:5]]


def test_chunk_aqara_cloud_limits() -> None:
    items = [item(f"d{n}", f"t{k}") for n in range(12) for k in range(5)]
    chunks = chunk(items, 50, 10)
    assert [len(c) for c in chunks] == [50, 10]
    assert len({i.address.device_id for i in chunks[0]}) == 10


@pytest.mark.parametrize(("max_items", "max_devices"), [(0, None), (None, 0), (-1, 5)])
def test_chunk_refuses_bad_limits(max_items: int | None, max_devices: int | None) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        chunk([item("a")], max_items, max_devices)


limits = st.none() | st.integers(min_value=1, max_value=6)


@given(st.lists(st.tuples(st.sampled_from("abcdefg"), st.integers(0, 99)), max_size=40),
       limits, limits)
def test_chunk_properties(
    specs: list[tuple[str, int]], max_items: int | None, max_devices: int | None
) -> None:
    items = [item(device, str(n)) for device, n in specs]
    chunks = chunk(items, max_items, max_devices)
    assert [i for c in chunks for i in c] == items  # order kept, nothing lost
    for c in chunks:
        assert c
        assert max_items is None or len(c) <= max_items
        assert max_devices is None or len({i.address.device_id for i in c}) <= max_devices
    for before, after in itertools.pairwise(chunks):  # greedy: a chunk ends only when full
        devices = {i.address.device_id for i in before}
        next_device = after[0].address.device_id
        full = max_items is not None and len(before) == max_items
        too_many = (max_devices is not None and next_device not in devices
                    and len(devices) == max_devices)
        assert full or too_many


def test_a_latest_queue_keeps_the_order_of_the_latest_changes() -> None:
    queue: LatestQueue[int] = LatestQueue(limit=10)
    for key, value in (("a", 1), ("b", 2), (None, 3), ("a", 4), (None, 5)):
        queue.put(value, key)
    assert len(queue) == 4
    assert queue.drain() == [2, 3, 4, 5]
    assert len(queue) == 0


def test_a_latest_queue_overflows_whole_and_counts_what_it_dropped() -> None:
    queue: LatestQueue[int] = LatestQueue(limit=2)
    queue.put(1, "a")
    queue.put(2, "a")  # replaced: not dropped
    queue.put(3, "b")
    queue.put(4, "c")  # the third: overflow
    queue.put(5, "d")
    assert queue.overflowed
    assert len(queue) == 0
    assert queue.dropped == 4
    assert queue.drain() == []
    assert not queue.overflowed
    queue.put(6, "a")
    assert queue.drain() == [6]


def test_a_latest_queue_without_a_limit_never_overflows() -> None:
    queue: LatestQueue[int] = LatestQueue(limit=None)
    for value in range(10_000):
        queue.put(value)
    assert not queue.overflowed
    assert len(queue) == 10_000
