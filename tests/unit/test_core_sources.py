"""One device seen by two backends (Studio locally, the Aqara cloud remotely) is published once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bridge.backends.base import Backend, EventSink
from bridge.core import Bridge, CoreOptions, source_rank
from bridge.model import (
    Device,
    DeviceRemoved,
    Endpoint,
    Function,
    Snapshot,
    Trait,
    TraitAddress,
    TraitChanged,
    TraitSpec,
    TraitType,
    WriteFailure,
    WriteItem,
)
from bridge.outputs.topic_tree import TopicTree


class Recorder:
    """A publisher that keeps the last payload per topic."""

    def __init__(self) -> None:
        self.last: dict[str, str | bytes] = {}

    def publish(self, topic: str, payload: str | bytes | Callable[[], str | bytes],
                retain: bool = False, qos: int | None = None, properties: Any = None) -> None:
        self.last[topic] = payload() if callable(payload) else payload

    def subscribe(self, filters: list[str], no_local: bool = True,
                  qos: int | None = None) -> None:
        pass

    def unsubscribe(self, filters: list[str]) -> None:
        pass


class Source(Backend):
    """A backend that only exists to be named and ranked."""

    def __init__(self, name: str, kind: str) -> None:
        super().__init__(name)
        self.kind = kind
        self.connected = True

    async def run(self, sink: EventSink) -> None:
        raise NotImplementedError

    async def write(self, items: Sequence[WriteItem]) -> list[WriteFailure]:
        return []

    async def read(self, addresses: Sequence[TraitAddress]) -> dict[TraitAddress, Any]:
        return {}

    async def snapshot(self) -> list[Device]:
        return []

    async def probe(self) -> int:
        return 0


POWER = TraitSpec(TraitType.NUMBER, unit="W")


def plug(backend: str, watts: float) -> Device:
    trait = Trait("CurrentPower", POWER, watts)
    function = Function("EnergyManagement", {"CurrentPower": trait})
    return Device("lumi.1", "Plug", backend, endpoints={1: Endpoint(1, (), {
        "EnergyManagement": function})})


ADDRESS = TraitAddress("lumi.1", 1, "EnergyManagement", "CurrentPower")
TOPIC = "aqara/lumi.1/1/EnergyManagement/CurrentPower"


def make() -> tuple[Bridge, Recorder, Source, Source]:
    local, cloud = Source("home", "studio"), Source("cloud", "aqara_cloud")
    bridge = Bridge([local, cloud], CoreOptions(device_state_topic=False))
    bridge.add_output(TopicTree(bridge.topics, device_state_topic=False))
    recorder = Recorder()
    bridge.attach(recorder)
    return bridge, recorder, local, cloud


def test_ranks() -> None:
    assert source_rank(Source("a", "studio")) < source_rank(Source("b", "aqara_cloud"))
    assert source_rank(Source("b", "aqara_cloud")) < source_rank(Source("c", "tuya"))
    assert source_rank(Source("d", "other")) > source_rank(Source("c", "tuya"))


def test_local_source_wins_whatever_the_order() -> None:
    bridge, recorder, local, cloud = make()
    bridge.handle_event(cloud, Snapshot((plug("cloud", 10.0),)))
    assert bridge.devices["lumi.1"].backend is cloud
    bridge.handle_event(local, Snapshot((plug("home", 20.0),)))
    assert bridge.devices["lumi.1"].backend is local  # the local hub takes the device over
    assert recorder.last[TOPIC] == "20"
    bridge.handle_event(cloud, Snapshot((plug("cloud", 30.0),)))
    bridge.handle_event(cloud, TraitChanged(ADDRESS, 40.0))
    assert recorder.last[TOPIC] == "20"  # the cloud's view of the same device is ignored
    bridge.handle_event(local, TraitChanged(ADDRESS, 50.0))
    assert recorder.last[TOPIC] == "50"
    assert len(bridge.devices) == 1


def test_only_the_source_removes_the_device() -> None:
    bridge, recorder, local, cloud = make()
    bridge.handle_event(local, Snapshot((plug("home", 20.0),)))
    bridge.handle_event(cloud, DeviceRemoved("lumi.1"))
    bridge.handle_event(cloud, Snapshot(()))  # the cloud lost it: not the source, no effect
    assert "lumi.1" in bridge.devices
    bridge.handle_event(local, DeviceRemoved("lumi.1"))
    assert "lumi.1" not in bridge.devices
    assert recorder.last[TOPIC] == b""
