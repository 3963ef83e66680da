"""The active member's lease keeper against a recording link and a hand-driven clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from bridge.lease import HELD, RELEASED, ActiveLease, LeaseRecord, Phase, Timing, parse_lease
from bridge.lease_keeper import LeaseKeeper
from bridge.messages import Payload, PublishProperties
from bridge.topics import TopicScheme

TIMING = Timing.from_keepalive(4)
HOLDER = LeaseRecord("a", 3, HELD, 10)
TOPIC = "aqara/bridge/lease"


@dataclass
class Link:
    """What the keeper sent; acknowledgements are given by the test."""

    connected: bool = True
    tracked: list[tuple[bytes, Callable[[], None]]] = field(default_factory=list)
    subscribed: list[str] = field(default_factory=list)

    def publish(self, topic: str, payload: Payload, retain: bool = False, qos: int | None = None,
                properties: PublishProperties | None = None) -> None:
        raise AssertionError("the keeper publishes its records tracked only")

    def subscribe(self, filters: list[str], no_local: bool = True,
                  qos: int | None = None) -> None:
        self.subscribed += filters

    def unsubscribe(self, filters: list[str]) -> None:
        raise AssertionError("nothing to unsubscribe")

    def publish_tracked(self, topic: str, payload: bytes, on_ack: Callable[[], None]) -> None:
        assert topic == TOPIC
        self.tracked.append((payload, on_ack))

    def records(self) -> list[LeaseRecord | None]:
        return [parse_lease(payload) for payload, _ack in self.tracked]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def keeper(clock: Clock, lost_for: float = 0.0) -> tuple[LeaseKeeper, Link, list[str]]:
    ended: list[str] = []
    keep = LeaseKeeper(TopicScheme("aqara"), ActiveLease("b", TIMING, HOLDER),
                       lambda _now: lost_for, ended.append, clock)
    link = Link()
    keep.connecting(link)
    keep.handle(TOPIC, HOLDER.encode(), True)  # what the broker retains, before the round ends
    return keep, link, ended


async def settled(keep: LeaseKeeper, link: Link, clock: Clock) -> list[str]:
    went_on: list[str] = []
    keep.learned(lambda: went_on.append("on"))
    claim = link.records()[0]
    assert claim == LeaseRecord("b", 4)
    keep.handle(TOPIC, link.tracked[0][0], False)  # its echo
    clock.now = TIMING.settle
    keep._tick()
    return went_on


async def test_the_claim_goes_out_after_the_round_and_the_core_goes_on_once_it_settled(
        clock: Clock) -> None:
    keep, link, ended = keeper(clock)
    assert TOPIC in link.subscribed
    assert "aqara/bridge/standby/+" in link.subscribed
    assert not keep.may_act()
    assert keep.may_publish()  # held back by the guard meanwhile, not dropped
    went_on = await settled(keep, link, clock)
    assert went_on == ["on"]
    assert keep.may_act()
    assert link.records()[-1] == LeaseRecord("b", 4, HELD, 1)  # the first renewal, at once
    assert ended == []
    keep.stop()


async def test_an_echo_acknowledges_a_renewal_as_a_puback_would(clock: Clock) -> None:
    keep, link, _ended = keeper(clock)
    await settled(keep, link, clock)
    for second in range(2, 12):
        clock.now = float(second)
        keep._tick()
        keep.handle(TOPIC, link.tracked[-1][0], False)  # echoes only, no PUBACK ever
        assert keep.may_act()
    keep.stop()


async def test_renewals_nobody_acknowledges_end_the_phase_once(clock: Clock) -> None:
    keep, link, ended = keeper(clock)
    await settled(keep, link, clock)
    for tenth in range(11, 80):
        clock.now = tenth / 10
        keep._tick()
    assert not keep.may_act()
    assert not keep.may_publish()
    assert ended == ["the lease was not renewed for 6 s (the broker acknowledged no renewal)"]


async def test_a_higher_record_ends_the_phase_at_once(clock: Clock) -> None:
    keep, link, ended = keeper(clock)
    await settled(keep, link, clock)
    keep.handle(TOPIC, LeaseRecord("c", 5).encode(), False)
    assert not keep.may_act()
    assert ended == ["replaced by member c (generation 5)"]


async def test_standbys_are_followed_with_their_reach(clock: Clock) -> None:
    keep, _link, _ended = keeper(clock)
    changes: list[dict[str, bool]] = []
    keep.on_standbys = lambda: changes.append(dict(keep.standbys))
    keep.handle("aqara/bridge/standby/c", b'{"member":"c","hub_reachable":true}', True)
    keep.handle("aqara/bridge/standby/c", b'{"member":"c","hub_reachable":true}', False)
    keep.handle("aqara/bridge/standby/d", b'{"member":"d","hub_reachable":false}', False)
    keep.handle("aqara/bridge/standby/c", b"offline", True)
    assert changes == [{"c": True}, {"c": True, "d": False}, {"d": False}]
    assert keep.info()["standbys"] == [{"member": "d", "hub_reachable": False}]
    keep.stop()


async def test_a_hub_lost_for_a_term_is_handed_to_a_standby_that_reaches_it(clock: Clock) -> None:
    keep, link, ended = keeper(clock, lost_for=TIMING.term)
    keep.handle("aqara/bridge/standby/c", b'{"member":"c","hub_reachable":true}', False)
    await settled(keep, link, clock)
    assert link.records()[-1] == LeaseRecord("b", 4, RELEASED, 2, "c")
    assert keep.lease.phase is Phase.ENDED
    assert ended == ["handed over to c: a hub was unreachable from this member"]


async def test_a_lost_hub_with_no_standby_that_reaches_it_is_kept(clock: Clock) -> None:
    keep, link, ended = keeper(clock, lost_for=100)
    keep.handle("aqara/bridge/standby/c", b'{"member":"c","hub_reachable":false}', False)
    await settled(keep, link, clock)
    assert keep.may_act()
    assert ended == []
    keep.stop()


async def test_a_release_on_a_clean_stop_is_no_end_to_report(clock: Clock) -> None:
    keep, link, ended = keeper(clock)
    await settled(keep, link, clock)
    keep.release()
    keep.handle(TOPIC, link.tracked[-1][0], False)
    assert link.records()[-1] == LeaseRecord("b", 4, RELEASED, 2)
    assert ended == []
