"""Who owns a base topic: the guard's decisions from what a broker retains (sans-IO)."""

from __future__ import annotations

import json
from typing import Any

from bridge.instance import (
    GuardOutcome,
    Identity,
    InstanceGuard,
    assess,
    identity_of,
    manifest,
    rival_message,
)
from bridge.topics import TopicScheme

SCHEME = TopicScheme("aqara")
OURS = Identity("aqara", ("hub-a",), "m1", 100.0)


def info(identity: Identity | None) -> bytes:
    document: dict[str, Any] = {"version": "1"}
    if identity is not None:
        document["instance"] = identity.as_json()
    return json.dumps(document).encode()


def devices(*pairs: tuple[str, str]) -> bytes:
    return json.dumps([{"id": i, "topic": f"aqara/{level}"} for i, level in pairs]).encode()


def retained(identity: Identity | None, state: bytes = b"offline",
             listing: bytes | None = None) -> dict[str, bytes]:
    found = {"aqara/bridge/info": info(identity), "aqara/bridge/state": state}
    if listing is not None:
        found["aqara/bridge/devices"] = listing
    return found


def test_identity_round_trips_through_bridge_info() -> None:
    assert identity_of(json.loads(info(OURS))) == OURS
    assert identity_of({"version": "1"}) is None
    assert identity_of({"instance": {"id": 3}}) is None
    assert identity_of({"instance": {"id": "x", "hubs": "nope"}}) == Identity("x", (), "", 0.0)


def test_other_instance_by_id_or_by_hubs_in_common() -> None:
    assert OURS.is_other_instance(Identity("site_b", ("hub-a",)))
    assert OURS.is_other_instance(Identity("aqara", ("hub-b",)))
    assert not OURS.is_other_instance(Identity("aqara", ("hub-a", "hub-b")))  # a hub added
    assert not OURS.is_other_instance(Identity("aqara", ()))  # an older run naming no hubs


def test_a_failover_member_knows_its_instance_by_the_id_alone() -> None:
    member = Identity("aqara", ("hub-a",), "pi-b", failover=True)
    assert not member.is_other_instance(Identity("aqara", ("hub-a-by-another-address",)))
    assert member.is_other_instance(Identity("site_b", ("hub-a",)))
    assert not OURS.is_other_instance(Identity("aqara", ("hub-a",), "m2"))  # another run


def test_the_younger_of_two_live_processes_yields() -> None:
    older = Identity("aqara", ("hub-a",), "zz", 50.0)
    younger = Identity("aqara", ("hub-a",), "aa", 60.0)
    assert younger.yields_to(older)
    assert not older.yields_to(younger)
    twin = Identity("aqara", ("hub-a",), "ab", 60.0)
    assert twin.yields_to(younger) != younger.yields_to(twin)  # ties broken, never both


def test_another_instance_online_on_the_base_topic_is_a_conflict() -> None:
    other = Identity("site_b", ("hub-b",), "m9", 90.0)
    outcome = assess(OURS, SCHEME, retained(other, b"online", devices(("x", "x"))))
    assert outcome.conflict is not None
    assert "instance 'site_b'" in outcome.conflict
    assert "mqtt.base_topic" in outcome.conflict
    assert "mosquitto_pub -r -n -t 'aqara/bridge/state'" in outcome.conflict
    assert outcome.owned == {}


def test_another_instance_offline_leaves_nothing_to_us() -> None:
    other = Identity("site_b", ("hub-b",))
    outcome = assess(OURS, SCHEME, retained(other, b"offline", devices(("x", "lamp"))))
    assert outcome == GuardOutcome(owned={}, adopted_foreign=True)


def test_our_own_manifest_is_what_we_may_clear() -> None:
    earlier_run = Identity("aqara", ("hub-a",), "m0", 10.0)
    outcome = assess(OURS, SCHEME, retained(earlier_run, b"online",  # killed: will not yet
                                            devices(("lumi.1", "lamp"), ("lumi.2", "lumi.2"))))
    assert outcome.conflict is None
    assert outcome.owned == {"lumi.1": "lamp", "lumi.2": "lumi.2"}


def test_an_info_without_instance_is_an_older_version_of_this_bridge() -> None:
    outcome = assess(OURS, SCHEME, retained(None, b"online", devices(("lumi.1", "lamp"))))
    assert outcome == GuardOutcome(owned={"lumi.1": "lamp"})


def test_nothing_retained_owns_nothing() -> None:
    assert assess(OURS, SCHEME, {}) == GuardOutcome()


def test_manifest_reads_only_what_it_understands() -> None:
    listing = json.dumps([
        {"id": "a", "topic": "aqara/a"}, {"id": "b", "topic": "other/b"},
        {"id": "c", "topic": "aqara/c/1/x/y"}, {"id": 4, "topic": "aqara/d"}, "junk",
        {"id": "e"}, {"id": "f", "topic": "aqara/"}]).encode()
    assert manifest(listing, SCHEME) == {"a": "a"}
    assert manifest(b"not json", SCHEME) == {}
    assert manifest(b'{"id": "a"}', SCHEME) == {}


class Port:
    """Records what the guard publishes and subscribes."""

    def __init__(self) -> None:
        self.published: list[str] = []
        self.subscribed: list[str] = []

    def publish(self, topic: str, payload: Any, retain: bool = False, qos: int | None = None,
                properties: Any = None) -> None:
        self.published.append(topic)

    def subscribe(self, filters: list[str], no_local: bool = True,
                  qos: int | None = None) -> None:
        self.subscribed += filters

    def unsubscribe(self, filters: list[str]) -> None:
        pass


def test_the_guard_learns_then_watches_for_rivals_and_a_lost_state() -> None:
    outcomes: list[GuardOutcome] = []
    rivals: list[Identity] = []
    lost: list[bool] = []
    guard = InstanceGuard(SCHEME, OURS, outcomes.append, rivals.append, lambda: lost.append(True))
    port = Port()
    guard.start(port)
    marker = port.published[-1]
    assert marker.startswith("aqara/bridge/instance_sync/")
    assert guard.handle("aqara/bridge/info", info(Identity("site_b", ("hub-b",))), True)
    assert guard.handle("aqara/bridge/state", b"online", True)
    assert guard.handle(marker, b"1", False)
    assert outcomes[0].conflict is not None
    # once this bridge published its own state and info, it watches both
    guard.watch()
    assert port.subscribed[-2:] == ["aqara/bridge/state", "aqara/bridge/info"]
    assert guard.handle("aqara/bridge/info", info(OURS), False)  # our own, echoed (3.1.1)
    assert guard.handle("aqara/bridge/info", info(Identity("x", ())), True)  # retained: old
    assert rivals == []
    rival = Identity("aqara", ("hub-a",), "m2", 200.0)
    assert guard.handle("aqara/bridge/info", info(rival), False)
    assert rivals == [rival]
    assert guard.handle("aqara/bridge/state", b"online", False)
    assert lost == []
    assert guard.handle("aqara/bridge/state", b"offline", True)  # as it was before ours
    assert lost == []
    assert guard.handle("aqara/bridge/state", b"offline", False)  # a late will, now
    assert lost == [True]
    assert not guard.handle("aqara/lamp/1/Output/OnOff/set", b"1", False)


def test_rival_messages_say_what_to_fix() -> None:
    other = Identity("site_b", ("hub-b",))
    assert "its own mqtt.base_topic" in rival_message(OURS, other, "aqara")
    twin = Identity("aqara", ("hub-a",), "m2")
    assert "one process per instance" in rival_message(OURS, twin, "aqara")
