"""A connect compares with what the broker retains and publishes only what differs (sans-IO)."""

from __future__ import annotations

import asyncio

from bridge.messages import JSON, TEXT, IncomingMessage
from bridge.model import Device, TraitChanged
from bridge.retained import Learned, RetainedLearner
from tests.unit.test_core import (
    LIGHT,
    PLUG,
    FakePublisher,
    Rig,
    addr,
    light,
    make_rig,
    next_turn,
    plug,
)

ONOFF = f"aqara/{LIGHT}/1/Output/OnOff"


def learned(payloads: dict[str, bytes], types: dict[str, str] | None = None) -> Learned:
    found = Learned()
    found.update(payloads)
    found.content_types = types
    return found


def test_only_the_same_bytes_and_content_type_are_held() -> None:
    found = learned({"a": b"true", "b": b"21.5", "c": b"x"}, {"a": JSON, "b": JSON})
    assert found.holds("a", "true", JSON)
    assert not found.holds("b", "21.50", JSON)  # equal as numbers, not as bytes
    assert not found.holds("c", "x", TEXT)  # retained without a content type
    assert not found.holds("d", "", TEXT)  # not retained at all
    assert not found.holds("a", "true", JSON)  # each topic is compared once
    assert found == {}


def test_another_content_type_is_not_held_but_payloads_alone_are_without_properties() -> None:
    assert not learned({"a": b"on"}, {"a": "text/plain; charset=utf-8"}).holds("a", "on", TEXT)
    assert learned({"a": b"on"}).holds("a", b"on", TEXT)  # MQTT 3.1.1: nothing to compare


class Port(FakePublisher):
    """A recorder for the learner's subscriptions and markers."""


def a_round(deadline: float | None = None
            ) -> tuple[RetainedLearner, Port, list[Learned], asyncio.Event]:
    port, done, finished = Port(), list[Learned](), asyncio.Event()

    def on_done(found: Learned) -> None:
        done.append(found)
        finished.set()

    learner = RetainedLearner("aqara/bridge/x_sync", ["aqara/+/+"], content_types=True,
                              deadline=deadline)
    learner.start(port, on_done)
    return learner, port, done, finished


async def test_the_marker_tells_whether_the_connection_carries_content_types() -> None:
    for carried, expected in ((JSON, {"aqara/a/b": JSON}), (None, None)):
        learner, port, done, _finished = a_round()
        assert learner.handle("aqara/a/b", b"1", True, carried)
        assert learner.handle("aqara/a/c", b"2", True)
        assert not learner.handle("aqara/a/d", b"3", False, JSON)  # live, not the broker's store
        marker = port.sent[-1]
        assert marker.properties is not None
        assert marker.properties.content_type == TEXT
        learner.handle(marker.topic, b"1", False, TEXT if carried else None)
        (found,) = done
        assert found == {"aqara/a/b": b"1", "aqara/a/c": b"2"}
        assert found.content_types == expected
        assert found.complete


async def test_a_round_whose_marker_never_comes_back_ends_at_its_deadline() -> None:
    learner, port, done, finished = a_round(deadline=0.05)
    learner.handle("aqara/a/b", b"1", True, JSON)
    async with asyncio.timeout(5):
        await finished.wait()
    (found,) = done
    assert not found.complete
    assert found == {"aqara/a/b": b"1"}
    assert found.content_types == {"aqara/a/b": JSON}  # one seen: properties are carried
    assert port.subscribed == []  # unsubscribed
    assert not learner.learning


async def first_run(*devices: Device) -> dict[str, str]:
    """What a first run (no manifest: everything published) leaves retained."""
    rig = make_rig()
    rig.bridge.on_mqtt_connected()
    rig.snapshot(*devices)
    await next_turn()
    return {t: p for t, p in rig.mqtt.retained.items() if not t.startswith("aqara/bridge/")}


def restarted(*owned: str) -> Rig:
    """A new process connecting with this instance's manifest (the guard read it)."""
    rig = make_rig()
    rig.bridge.owned = {device_id: device_id for device_id in owned or (LIGHT, PLUG)}
    rig.bridge.on_mqtt_connected()
    assert rig.tree.syncing
    return rig


def replay(rig: Rig, retained: dict[str, str]) -> None:
    """The broker's retained messages, then the round's marker back."""
    for topic, payload in retained.items():
        rig.send(topic, payload, retain=True)
    marker = next(s.topic for s in rig.mqtt.sent if "/topics_sync/" in s.topic)
    rig.send(marker, "1")


def device_topics(rig: Rig) -> list[str]:
    return [s.topic for s in rig.mqtt.sent if s.topic.startswith("aqara/")
            and not s.topic.startswith("aqara/bridge/")]


async def test_an_unchanged_restart_publishes_no_device_topic() -> None:
    retained = await first_run(light(), plug(online=False))
    assert retained[f"aqara/{PLUG}/availability"] == "offline"
    rig = restarted()
    rig.snapshot(light(), plug(online=False))  # before the marker: held back
    await next_turn()
    assert device_topics(rig) == []
    replay(rig, retained)
    await next_turn()
    assert device_topics(rig) == []
    assert rig.tree.unchanged == len(retained)
    assert rig.tree.trait_topic(rig.bridge.devices[LIGHT], addr(LIGHT, 1, "Output", "OnOff"))


async def test_what_differs_or_is_missing_is_published_and_a_later_snapshot_compared() -> None:
    retained = await first_run(light(), plug())
    del retained[f"aqara/{PLUG}"]  # the broker lost the plug's document
    rig = restarted()
    replay(rig, retained)  # the hub answers only after the round
    assert not rig.tree.syncing
    rig.snapshot(light(on=False), plug(online=False))
    await next_turn()
    assert sorted(device_topics(rig)) == sorted([
        ONOFF, f"aqara/{LIGHT}", f"aqara/{PLUG}", f"aqara/{PLUG}/availability"])
    assert rig.mqtt.retained[f"aqara/{PLUG}/availability"] == "offline"
    assert rig.tree.complete
    # what was learned is gone once every backend is complete: a new value is just published
    rig.event(TraitChanged(addr(PLUG, 1, "Output", "OnOff"), True))
    assert device_topics(rig)[-1] == f"aqara/{PLUG}/1/Output/OnOff"


async def test_a_change_while_learning_goes_out_at_once_and_only_once() -> None:
    retained = await first_run(light())
    rig = restarted(LIGHT)
    rig.snapshot(light())
    rig.event(TraitChanged(addr(LIGHT, 1, "Output", "OnOff"), False))  # a live change
    assert device_topics(rig) == [ONOFF]
    await next_turn()  # and its document, built from the whole device
    replay(rig, retained)
    await next_turn()
    assert device_topics(rig) == [ONOFF, f"aqara/{LIGHT}"]
    assert rig.mqtt.retained[ONOFF] == "false"


async def test_a_device_that_went_offline_meanwhile_is_published_offline() -> None:
    retained = await first_run(light())
    rig = restarted(LIGHT)
    rig.snapshot(light(online=False))
    replay(rig, retained)
    await next_turn()
    assert rig.mqtt.retained[f"aqara/{LIGHT}/availability"] == "offline"
    assert f"aqara/{LIGHT}/availability" in device_topics(rig)


async def test_a_cleared_topic_is_published_again_whatever_was_learned() -> None:
    """A clear the link still holds (parked) lands after what the round learned."""
    retained = await first_run(light())
    rig = restarted(LIGHT)
    rig.snapshot(light())
    rig.snapshot()  # the light is gone: its topics are cleared
    rig.snapshot(light())  # and back before the marker
    replay(rig, retained)
    await next_turn()
    assert rig.mqtt.retained[f"aqara/{LIGHT}/availability"] == "online"
    assert rig.mqtt.retained[f"aqara/{LIGHT}"]


class UnconnectedLink(FakePublisher):
    """A link that says it is not connected yet (the daemon's, at start-up)."""

    connected = False


async def test_a_snapshot_before_the_first_connect_waits_for_the_comparison() -> None:
    retained = await first_run(light())
    rig = make_rig()
    link = UnconnectedLink()
    rig.bridge.attach(link)
    rig.snapshot(light())
    await next_turn()
    assert [s.topic for s in link.sent if not s.topic.startswith("aqara/bridge/")] == []
    rig.bridge.owned = {LIGHT: LIGHT}
    rig.bridge.on_mqtt_connected()
    for topic, payload in retained.items():
        rig.bridge.handle_message(IncomingMessage(topic, payload.encode(), True))
    marker = next(s.topic for s in link.sent if "/topics_sync/" in s.topic)
    rig.bridge.handle_message(IncomingMessage(marker, b"1"))
    await next_turn()
    assert [s.topic for s in link.sent if s.topic.startswith(f"aqara/{LIGHT}")] == []

