"""The core feeds outputs through one interface and names none of them (sans-IO)."""

from __future__ import annotations

from typing import Any

from bridge.entries import DeviceEntry
from bridge.extension import Core, Output
from bridge.messages import IncomingMessage, MqttPort, Origin
from bridge.model import Availability, DeviceRemoved, DeviceRenamed, Trait, TraitAddress
from bridge.model import TraitChanged as Changed
from tests.unit.test_core import LIGHT, addr, light, make_rig


class Recorder(Output):
    """Records every hook; owns ``ext/#`` and writes what it receives there to OnOff."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.core: Core | None = None

    @property
    def subscriptions(self) -> list[str]:
        return ["ext/#"]

    def attach(self, mqtt: MqttPort, core: Core) -> None:
        self.core = core

    def on_connected(self) -> None:
        self.calls.append(("connected", None))

    def device_added(self, entry: DeviceEntry) -> None:
        self.calls.append(("added", entry.device.id))

    def device_renamed(self, entry: DeviceEntry) -> None:
        self.calls.append(("renamed", entry.device.name))

    def device_removed(self, device_id: str) -> None:
        self.calls.append(("removed", device_id))

    def value_changed(self, entry: DeviceEntry, address: TraitAddress, trait: Trait) -> None:
        self.calls.append(("value", (address.path(), trait.value)))

    def availability_changed(self, entry: DeviceEntry, available: bool) -> None:
        self.calls.append(("available", available))

    def handle(self, message: IncomingMessage) -> bool:
        if not message.topic.startswith("ext/"):
            return False
        assert self.core is not None
        self.core.write(LIGHT, addr(LIGHT, 1, "Output", "OnOff"), message.payload,
                        Origin.of(message))
        return True


async def test_an_output_hears_the_registry_and_mqtt() -> None:
    rig = make_rig()
    output = Recorder()
    rig.bridge.add_output(output)
    assert output.core is rig.bridge
    rig.bridge.on_mqtt_connected()
    rig.snapshot(light())
    rig.event(Changed(addr(LIGHT, 1, "LevelControl", "CurrentLevel"), 41))
    rig.event(Availability(LIGHT, False))
    rig.event(DeviceRenamed(LIGHT, "Hall Light"))
    rig.event(DeviceRemoved(LIGHT))
    assert output.calls == [
        ("connected", None), ("available", True), ("added", LIGHT),
        ("value", ("1.LevelControl.CurrentLevel", 41)), ("available", False),
        ("renamed", "Hall Light"), ("removed", LIGHT),
    ]


async def test_an_output_writes_through_the_cores_validated_path() -> None:
    rig = make_rig()
    rig.bridge.add_output(Recorder())
    rig.snapshot(light(on=False))
    rig.send("ext/anything", "maybe")  # not a boolean: rejected by the core, nothing sent
    rig.send("ext/anything", "ON")
    await rig.settle()
    assert [[(i.address.path(), i.value) for i in w] for w in rig.backend.writes] == [
        [("1.Output.OnOff", True)]]
    (rejected,) = rig.mqtt.logs()
    assert rejected["topic"] == "ext/anything"
    assert "rejected" in rejected["message"]


async def test_messages_nobody_owns_are_dropped() -> None:
    rig = make_rig()
    output = Recorder()
    rig.bridge.add_output(output)
    rig.send("elsewhere/x", "1")
    assert rig.mqtt.sent == []
    assert output.calls == []
