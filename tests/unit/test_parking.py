"""The parking line: latest value per retained topic, publication order kept, bounded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bridge.parking import COMPACT_SLACK, ParkingLine, Unacknowledged

Sent = tuple[str, str]  # ("r", topic=value) or ("o", message), in the order sent


def drain(line: ParkingLine[str, str], budget: int = 10**9) -> list[Sent]:
    out: list[Sent] = []
    line.drain(budget, lambda topic, value: out.append(("r", f"{topic}={value}")),
               lambda message: out.append(("o", message)))
    return out


def test_a_topic_that_takes_another_value_goes_after_what_was_parked_before_it() -> None:
    line: ParkingLine[str, str] = ParkingLine()
    line.park_retained("dev/$state", "init")
    line.park_retained("dev/$description", "d1")
    line.park_retained("dev/$state", "ready")
    line.park_retained("dev/$state", "init")  # a second change moves it again
    line.park_retained("dev/$description", "d2")
    line.park_retained("dev/$state", "ready")
    assert len(line) == 2
    assert drain(line) == [("r", "dev/$description=d2"), ("r", "dev/$state=ready")]
    assert len(line) == 0


def test_the_same_value_again_keeps_its_place() -> None:
    line: ParkingLine[str, str] = ParkingLine()
    line.park_retained("a", "1")
    line.park_retained("b", "1")
    line.park_retained("a", "1")
    assert drain(line) == [("r", "a=1"), ("r", "b=1")]


def test_other_messages_keep_their_place_among_retained_ones() -> None:
    line: ParkingLine[str, str] = ParkingLine()
    line.park_retained("dev/$description", "d")
    line.park_other("event 1")
    line.park_retained("dev/$state", "ready")
    line.park_other("event 2")
    assert drain(line) == [("r", "dev/$description=d"), ("o", "event 1"),
                           ("r", "dev/$state=ready"), ("o", "event 2")]


def test_a_budget_sends_the_first_ones_and_keeps_the_rest_in_order() -> None:
    line: ParkingLine[str, str] = ParkingLine()
    for n in range(5):
        line.park_retained(f"t{n}", "v")
    line.park_retained("t0", "w")  # moved: its first place is skipped, costing no budget
    assert drain(line, 2) == [("r", "t1=v"), ("r", "t2=v")]
    line.park_retained("t1", "again")
    assert drain(line) == [("r", "t3=v"), ("r", "t4=v"), ("r", "t0=w"), ("r", "t1=again")]


def test_the_oldest_other_message_is_dropped_at_the_bound() -> None:
    line: ParkingLine[str, str] = ParkingLine(other_limit=2)
    for n in range(4):
        line.park_other(f"m{n}")
    assert (len(line), line.dropped) == (2, 2)
    assert drain(line) == [("o", "m2"), ("o", "m3")]


def test_unacknowledged_messages_go_first_unless_a_newer_value_is_parked() -> None:
    line: ParkingLine[str, str] = ParkingLine()
    line.park_retained("b", "new")
    line.park_other("later")
    line.put_back([Unacknowledged("a", "1"), "response", Unacknowledged("b", "old")])
    assert drain(line) == [("r", "a=1"), ("o", "response"), ("r", "b=new"), ("o", "later")]
    line.park_retained("c", "1")
    line.put_back([Unacknowledged("c", "0")])
    assert drain(line) == [("r", "c=1")]


def test_a_resend_never_replaces_a_parked_value() -> None:
    line: ParkingLine[str, str] = ParkingLine()
    line.park_retained("a", "new")
    line.park_retained("a", "old", newer=False)
    assert drain(line) == [("r", "a=new")]


def test_a_hot_topic_does_not_grow_the_line() -> None:
    line: ParkingLine[str, str] = ParkingLine(other_limit=10)
    line.park_retained("cold", "c")
    for n in range(20_000):
        line.park_retained("hot", str(n))
        line.park_other(f"e{n}")
    assert len(line._line) <= 2 * len(line) + COMPACT_SLACK + 1
    out = drain(line)
    assert out[0] == ("r", "cold=c")
    assert ("r", "hot=19999") in out
    assert [m for kind, m in out if kind == "o"] == [f"e{n}" for n in range(19_990, 20_000)]


def test_high_water_once_drained_and_clear() -> None:
    line: ParkingLine[str, str] = ParkingLine()
    for n in range(3):
        line.park_retained(f"t{n}", "v")
    assert line.take_high_water() == 0  # still parked
    drain(line)
    assert line.take_high_water() == 3
    assert line.take_high_water() == 0
    line.park_retained("a", "1")
    line.park_other("m")
    assert line.clear() == 2
    assert drain(line) == []


@given(st.lists(st.tuples(st.sampled_from(["r", "o"]), st.integers(0, 5), st.integers(0, 3)),
                max_size=300), st.lists(st.integers(1, 7), max_size=50))
def test_what_leaves_is_the_publications_still_wanted_in_publication_order(
        ops: list[tuple[str, int, int]], budgets: list[int]) -> None:
    """Against the sequence published: what leaves is a subsequence of it (nothing overtakes
    what was published before it), every non-retained message once, and each retained topic
    ends on its last value, whatever the drain budgets."""
    line: ParkingLine[str, str] = ParkingLine(other_limit=10**6)
    published: list[Sent] = []
    out: list[Sent] = []
    budget_iter = iter(budgets)
    for index, (kind, topic, value) in enumerate(ops):
        if kind == "r":
            line.park_retained(f"t{topic}", str(value))
            published.append(("r", f"t{topic}={value}"))
        else:
            line.park_other(f"m{index}")
            published.append(("o", f"m{index}"))
        if index % 7 == 0:
            out += drain(line, next(budget_iter, 3))
    out += drain(line)
    # every message sent is one that was published, in publication order (a subsequence)
    positions = iter(range(len(published)))
    for message in out:
        assert any(published[i] == message for i in positions), message
    # every other message is sent once; every topic ends on its last value
    assert [m for m in out if m[0] == "o"] == [m for m in published if m[0] == "o"]
    last: dict[str, str] = {}
    for kind, text in published:
        if kind == "r":
            last[text.split("=")[0]] = text
    sent_last: dict[str, str] = {}
    for kind, text in out:
        if kind == "r":
            sent_last[text.split("=")[0]] = text
    assert sent_last == last
