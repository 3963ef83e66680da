"""The Homie output's lifecycle (sans-IO, on a recording port): the root's order, a clean stop,
event QoS, Homie 4 beside Homie 5, versions kept in a file."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.messages import IncomingMessage, PublishProperties
from bridge.model import DeviceEvent
from bridge.outputs.homie import Convention, device_homie_id
from bridge.outputs.homie_output import HomieOutput, load_versions
from tests.unit.test_core import LIGHT, PLUG, Rig, light, make_rig, plug
from tests.unit.test_events import REMOTE, remote

ROOT = "homie/5/aqara-mqtt"
LIGHT5 = f"homie/5/{device_homie_id(LIGHT)}"
LIGHT4 = f"homie/{device_homie_id(LIGHT)}"


@dataclass
class Recorder:
    """An MQTT port that records each publish with its QoS, in order."""

    sent: list[tuple[str, str, bool, int | None]] = field(default_factory=list)

    def publish(self, topic: str, payload: Any, retain: bool = False, qos: int | None = None,
                properties: PublishProperties | None = None) -> None:
        self.sent.append((topic, payload() if callable(payload) else payload, retain, qos))

    def subscribe(self, filters: list[str], no_local: bool = True,
                  qos: int | None = None) -> None:
        """Not needed here."""

    def unsubscribe(self, filters: list[str]) -> None:
        """Not needed here."""

    def states(self, topic: str) -> list[str]:
        return [payload for t, payload, _r, _q in self.sent if t == topic]


def homie_rig(**options: Any) -> tuple[Rig, HomieOutput, Recorder]:
    rig = make_rig()
    homie = HomieOutput("homie", rig.bridge.entries, **options)
    rig.bridge.add_output(homie)
    recorder = Recorder()
    homie.attach(recorder, rig.bridge)
    return rig, homie, recorder


def root_sequence(recorder: Recorder) -> list[str]:
    """The root device's messages in order: its states, and ``description`` for each one."""
    return ["description" if topic.endswith("$description") else payload
            for topic, payload, _r, _q in recorder.sent if topic.startswith(f"{ROOT}/")]


async def test_the_root_is_ready_only_after_its_description_and_while_its_will_is_armed() -> None:
    armed = False
    rig, homie, recorder = homie_rig()
    homie.will_armed = lambda: armed
    rig.bridge.on_mqtt_connected()
    await asyncio.sleep(0)
    assert root_sequence(recorder) == ["init"]  # it exists, its children are not known yet
    rig.snapshot(light())
    await asyncio.sleep(0)
    assert root_sequence(recorder) == ["init", "init", "description"]  # no will: not ready
    armed = True
    homie.root_reconnected()
    await asyncio.sleep(0)
    assert root_sequence(recorder)[3:] == ["init", "description", "ready"]
    recorder.sent.clear()
    rig.snapshot(light(), plug())  # a new child: the description changes, through init
    await asyncio.sleep(0)
    assert root_sequence(recorder) == ["init", "description", "ready"]
    children = [json.loads(p) for t, p, _r, _q in recorder.sent if t == f"{ROOT}/$description"]
    assert children[0]["children"] == sorted(device_homie_id(d) for d in (LIGHT, PLUG))


async def test_a_clean_stop_says_disconnected_for_every_device_and_the_root_last() -> None:
    rig, homie, recorder = homie_rig(majors=(5, 4))
    rig.bridge.on_mqtt_connected()
    rig.snapshot(light(), plug())
    await asyncio.sleep(0)
    recorder.sent.clear()
    homie.stopping()
    states = [(topic, payload) for topic, payload, _r, _q in recorder.sent]
    assert states[-1] == (f"{ROOT}/$state", "disconnected")
    assert sorted(states[:-1]) == sorted(
        (f"{prefix}/{device_homie_id(d)}/$state", "disconnected")
        for prefix in ("homie/5", "homie") for d in (LIGHT, PLUG))
    recorder.sent.clear()
    rig.snapshot(light(on=False), plug())
    await asyncio.sleep(0)
    assert recorder.sent == []  # nothing says ready again after the stop


async def test_events_are_sent_not_retained_with_qos_0() -> None:
    rig, _homie, recorder = homie_rig(majors=(5, 4))
    rig.snapshot(remote())
    recorder.sent.clear()
    rig.event(DeviceEvent(REMOTE, 2, "2", "hold", 5))
    base = device_homie_id(REMOTE)
    assert recorder.sent == [(f"homie/5/{base}/events/button-2", "hold", False, 0),
                             (f"homie/{base}/events/button-2", "hold", False, 0)]


async def test_homie_4_describes_the_same_device_by_attribute_topics() -> None:
    rig, homie, recorder = homie_rig(majors=(4,))
    assert homie.subscriptions == ["homie/+/+/+/set"]
    assert not homie.has_root
    rig.bridge.on_mqtt_connected()
    rig.snapshot(light())
    await asyncio.sleep(0)
    retained = {topic: payload for topic, payload, _r, _q in recorder.sent}
    assert not any(topic.startswith("homie/5/") for topic in retained)
    assert recorder.states(f"{LIGHT4}/$state") == ["init", "ready"]
    assert retained[f"{LIGHT4}/$homie"] == "4.0.0"
    assert retained[f"{LIGHT4}/$name"] == "Dining Light"
    nodes = retained[f"{LIGHT4}/$nodes"].split(",")
    assert "ep1-output" in nodes
    assert retained[f"{LIGHT4}/ep1-output/$properties"] == "on-off"
    on_off = f"{LIGHT4}/ep1-output/on-off"
    assert [retained[f"{on_off}/${a}"] for a in ("datatype", "settable", "retained")] == [
        "boolean", "true", "true"]
    assert retained[on_off] == "true"
    level = f"{LIGHT4}/ep1-level-control/current-level"
    assert (retained[f"{level}/$format"], retained[f"{level}/$unit"]) == ("0:100", "%")
    assert retained[f"{LIGHT4}/ep1-effects/config/$datatype"] == "string"  # no json in Homie 4
    assert homie.resolve(f"{on_off}/set") == (LIGHT, next(
        a for a in homie._layouts[LIGHT].properties if a.trait_code == "OnOff"))


async def test_homie_4_takes_a_set_like_homie_5() -> None:
    rig, homie, _recorder = homie_rig(majors=(5, 4))
    rig.snapshot(light(on=False))
    for topic, payload in ((f"{LIGHT4}/ep1-output/on-off/set", b"true"),
                           (f"{LIGHT5}/ep1-output/on-off/set", b"false")):
        assert homie.handle(IncomingMessage(topic, payload))
        await rig.backend.changed.wait_for(lambda: rig.backend.writes)
        (item,) = rig.backend.writes.pop()
        assert (item.address.trait_code, item.value) == ("OnOff", payload == b"true")
    assert not homie.handle(IncomingMessage("homie/5/x/n/p/set", b"true"))
    assert Convention(4).set_subscription() in homie.subscriptions


async def test_versions_survive_a_restart_through_the_version_file(tmp_path: Path) -> None:
    path = tmp_path / "homie-versions.json"

    def run(name: str) -> int:
        rig, _homie, recorder = homie_rig(versions=load_versions(path), version_file=path)
        rig.snapshot(light(name=name))
        return int(json.loads(next(p for t, p, _r, _q in recorder.sent
                                   if t == f"{LIGHT5}/$description"))["version"])

    first = run("Dining Light")
    await asyncio.sleep(0)  # the record is written once the loop turn is over
    assert json.loads(path.read_text())[device_homie_id(LIGHT)][0] == first
    assert run("Dining Light") == first  # the same description keeps its version
    renamed = run("Kitchen Light")
    await asyncio.sleep(0)
    assert renamed > first
    assert run("Dining Light") > renamed  # renamed back: still up
    path.write_text("not json")
    assert load_versions(path).stamp("x", {})["version"] > 0  # unreadable: the clock alone
