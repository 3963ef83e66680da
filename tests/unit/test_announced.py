"""What discovery remembers of its configs: digests and components, never the text."""

from __future__ import annotations

import asyncio
import json

import pytest

from bridge.model import DeviceUpdated
from bridge.outputs import announce
from bridge.outputs.announced import Announced, Config, digest, removable_components
from bridge.outputs.discovery import discovery_changes
from tests.unit.test_announce import PREFIX, configs, connect, discovery_sent, with_discovery
from tests.unit.test_core import make_rig
from tests.unit.test_discovery import _device, messages_for

DEVICE_BASED = '{"dev": {}, "cmps": {"a": {"p": "sensor", "x": 1}, "b": {"p": "switch", "y": 2}, "c": {"p": "light"}}}'  # noqa: E501


def test_remembers_digests_and_components_of_non_empty_configs() -> None:
    announced = Announced({"t/config": DEVICE_BASED, "gone/config": "", "u/config": "{}"})
    assert list(announced) == ["t/config", "u/config"]
    assert len(announced) == 2
    assert announced["t/config"] == Config(digest(DEVICE_BASED),
                                           (("a", "sensor"), ("b", "switch")))
    assert announced["t/config"].matches(DEVICE_BASED)
    assert not announced["t/config"].matches(DEVICE_BASED.replace("1", "3"))
    assert announced.get("missing") is None
    with pytest.raises(KeyError):
        announced["missing"]


def test_devices_of_one_model_share_their_components() -> None:
    first, second = Announced({"a": DEVICE_BASED}), Announced({"b": DEVICE_BASED})
    assert first["a"].components is second["b"].components


@pytest.mark.parametrize("payload", ["", "not json", "[1]", '{"cmps": []}', '{"p": "sensor"}',
                                     '{"cmps": {"a": 1}}', "[" * 100_000])
def test_no_components_in_anything_else(payload: str) -> None:
    assert removable_components(payload) == ()


def test_works_as_the_previous_discovery() -> None:
    current = messages_for(_device("Bedroom Climate"))
    smaller = _device("Bedroom Climate")
    del smaller.endpoints[1].functions["PressureMeasurement"]
    after = messages_for(smaller)
    assert discovery_changes(Announced(current), after) == discovery_changes(current, after)
    assert discovery_changes(Announced(current), current) == {}
    assert discovery_changes(Announced(current), {}) == dict.fromkeys(current, "")
    (changed,) = discovery_changes(Announced(current), after).values()
    assert json.loads(changed)["cmps"]["ep1_pressure_measurement_current_pressure"] == {
        "p": "sensor"}


async def test_reannounce_sends_the_configs_rebuilt_from_the_model() -> None:
    rig = make_rig()
    discovery = with_discovery(rig)
    climate = _device("Bedroom Climate")
    connect(rig, {})
    rig.snapshot(climate)
    assert discovery_sent(rig) == configs(climate)
    rig.mqtt.clear()
    discovery._reannounce()
    assert discovery_sent(rig) == configs(climate)


async def test_a_component_lost_meanwhile_is_named_when_reannounced() -> None:
    rig = make_rig()
    discovery = with_discovery(rig)
    climate = _device("Bedroom Climate")
    connect(rig, {})
    rig.snapshot(climate)
    smaller = _device("Bedroom Climate")
    del smaller.endpoints[1].functions["PressureMeasurement"]
    rig.bridge.devices[climate.id].device = smaller  # changed without the announcer hearing it
    rig.mqtt.clear()
    discovery._reannounce()
    (payload,) = discovery_sent(rig).values()
    cmps = json.loads(payload)["cmps"]
    assert cmps["ep1_pressure_measurement_current_pressure"] == {"p": "sensor"}
    rig.mqtt.clear()
    rig.event(DeviceUpdated(smaller))  # what is remembered now is the smaller device
    assert discovery_sent(rig) == {}
    assert all(topic.startswith(PREFIX) for topic in discovery.published[climate.id])


async def test_a_large_home_is_reannounced_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(announce, "REANNOUNCE_BATCH", 1)
    rig = make_rig()
    discovery = with_discovery(rig)
    climate, other = _device("Bedroom Climate"), _device("Dining Light")
    connect(rig, {})
    rig.snapshot(climate, other)
    rig.mqtt.clear()
    discovery._reannounce()
    assert discovery_sent(rig) == configs(climate)  # one device in this loop turn
    await asyncio.sleep(0)
    assert discovery_sent(rig) == {**configs(climate), **configs(other)}


async def test_a_reconnect_stops_a_reannouncement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(announce, "REANNOUNCE_BATCH", 1)
    rig = make_rig()
    discovery = with_discovery(rig)
    connect(rig, {})
    rig.snapshot(_device("Bedroom Climate"), _device("Dining Light"))
    discovery._reannounce()
    rig.bridge.on_mqtt_connected()  # learning again: not in step until the marker is back
    rig.mqtt.clear()
    await asyncio.sleep(0)
    assert discovery_sent(rig) == {}
