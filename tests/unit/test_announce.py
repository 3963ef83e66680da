"""Discovery bookkeeping (sans-IO): configs cleared only on a backend's word; migration order."""

from __future__ import annotations

import asyncio
import json

from bridge.model import Device, DeviceRemoved, Snapshot
from bridge.outputs.announce import MIGRATE_PAYLOAD, HomeAssistantDiscovery
from bridge.outputs.discovery import DiscoveryOptions, discovery_messages
from bridge.outputs.homie_output import HomieOutput
from tests.unit.test_core import LIGHT, PLUG, FakeBackend, Rig, light, make_rig, plug

PREFIX = "homeassistant/"


def with_discovery(rig: Rig, device_based: bool = True) -> HomeAssistantDiscovery:
    options = DiscoveryOptions(device_based=device_based)
    discovery = HomeAssistantDiscovery(options, rig.bridge.topics,
                                       lambda: list(rig.bridge.devices.values()),
                                       migration_step=0.01)
    rig.bridge.add_output(discovery)
    return discovery


def configs(device: Device, device_based: bool = True) -> dict[str, str]:
    return discovery_messages(device, device.id, None, DiscoveryOptions(device_based=device_based))


def connect(rig: Rig, retained: dict[str, str], owned: tuple[str, ...] = (LIGHT, PLUG)) -> None:
    """A broker connect: the announcer learns ``retained`` (as the broker replays it), with
    ``owned`` as the devices of this instance's manifest (which the guard reads in the app)."""
    rig.bridge.owned = {device_id: device_id for device_id in owned}
    rig.bridge.on_mqtt_connected()
    for topic, payload in retained.items():
        rig.send(topic, payload, retain=True)
    marker = next(s.topic for s in rig.mqtt.sent if "/discovery_sync/" in s.topic)
    rig.send(marker, "1")


def discovery_sent(rig: Rig) -> dict[str, str]:
    return {s.topic: s.payload for s in rig.mqtt.sent if s.topic.startswith(PREFIX)}


async def test_a_hub_that_has_not_answered_removes_nothing() -> None:
    rig = make_rig()
    discovery = with_discovery(rig)
    connect(rig, {**configs(light()), **configs(plug())})
    assert discovery.in_step
    assert discovery_sent(rig) == {}
    assert len(discovery.orphans) == 2
    # the hub answers without the plug: now, and only now, the plug's config goes
    rig.snapshot(light())
    assert discovery_sent(rig) == dict.fromkeys(configs(plug()), "")
    assert discovery.orphans == {}


async def test_configs_of_devices_outside_the_manifest_are_never_cleared() -> None:
    """A retained config of a device this instance never published (another bridge's, on
    another base topic or before this one) stays, though it names the same prefix."""
    rig = make_rig()
    discovery = with_discovery(rig)
    connect(rig, {**configs(light()), **configs(plug())}, owned=(LIGHT,))
    rig.snapshot(light())
    assert discovery_sent(rig) == {}
    assert discovery.orphans == {}


async def test_configs_naming_another_bridges_state_are_never_cleared() -> None:
    """Ownership is read from the config itself: its availability must be our bridge/state."""
    rig = make_rig()
    with_discovery(rig)
    theirs = {topic: payload.replace('"aqara/bridge/state"', '"site_b/bridge/state"')
              for topic, payload in configs(plug()).items()}
    assert theirs != configs(plug())
    connect(rig, {**configs(light()), **theirs})
    rig.snapshot(light())
    assert discovery_sent(rig) == {}
    rig.bridge.handle_event(rig.backend, DeviceRemoved(PLUG))  # not ours either way
    assert discovery_sent(rig) == {}


async def test_every_backend_must_be_complete_before_orphans_go() -> None:
    local, cloud = FakeBackend("home"), FakeBackend("cloud")
    rig = make_rig([local, cloud])
    with_discovery(rig)
    connect(rig, {**configs(light()), **configs(plug(backend="cloud"))})
    rig.snapshot(light())  # "home" is complete, "cloud" has not answered
    assert discovery_sent(rig) == {}
    rig.bridge.handle_event(cloud, Snapshot(()))  # cloud: complete, and no plug
    assert discovery_sent(rig) == dict.fromkeys(configs(plug()), "")


async def test_a_device_reported_later_adopts_its_retained_config() -> None:
    rig = make_rig()
    discovery = with_discovery(rig)
    connect(rig, configs(light()))
    rig.snapshot(light())
    assert discovery_sent(rig) == {}
    assert discovery.messages_sent == 0


async def test_a_removed_event_clears_even_while_other_backends_are_missing() -> None:
    local, cloud = FakeBackend("home"), FakeBackend("cloud")
    rig = make_rig([local, cloud])
    with_discovery(rig)
    connect(rig, {})
    rig.snapshot(light(), plug())
    assert set(discovery_sent(rig)) == set(configs(light())) | set(configs(plug()))
    rig.mqtt.clear()
    rig.bridge.handle_event(local, DeviceRemoved(PLUG))
    assert discovery_sent(rig) == dict.fromkeys(configs(plug()), "")


async def test_layout_switch_migrates_old_topics_first_and_clears_them_last() -> None:
    rig = make_rig()
    with_discovery(rig, device_based=False)
    old = configs(light(), device_based=True)
    connect(rig, old)
    rig.snapshot(light())
    new = configs(light(), device_based=False)
    assert discovery_sent(rig) == dict.fromkeys(old, MIGRATE_PAYLOAD)
    await asyncio.sleep(0.05)
    sent = [(s.topic, s.payload) for s in rig.mqtt.sent if s.topic.startswith(PREFIX)]
    assert sent[0] == (next(iter(old)), MIGRATE_PAYLOAD)
    assert dict(sent[1:-1]) == new
    assert sent[-1] == (next(iter(old)), "")
    assert rig.mqtt.under("homeassistant") == new


async def test_migration_back_to_device_based() -> None:
    rig = make_rig()
    with_discovery(rig, device_based=True)
    old = configs(light(), device_based=False)
    connect(rig, old)
    rig.snapshot(light())
    assert discovery_sent(rig) == dict.fromkeys(old, MIGRATE_PAYLOAD)
    await asyncio.sleep(0.05)
    assert rig.mqtt.under("homeassistant") == configs(light())
    cleared = [s.topic for s in rig.mqtt.sent if s.topic in old and s.payload == ""]
    assert sorted(cleared) == sorted(old)


async def test_homie_root_lists_its_children_only_once_every_backend_is_complete() -> None:
    local, cloud = FakeBackend("home"), FakeBackend("cloud")
    rig = make_rig([local, cloud])
    homie = HomieOutput("homie", lambda: list(rig.bridge.devices.values()))
    rig.bridge.add_output(homie)
    rig.bridge.on_mqtt_connected()
    rig.snapshot(light())
    await asyncio.sleep(0)
    root = "homie/5/aqara-mqtt/$description"
    assert not rig.mqtt.on(root)  # "cloud" has not answered: its children would be missing
    rig.bridge.handle_event(cloud, Snapshot((plug(backend="cloud"),)))
    await asyncio.sleep(0)
    (description,) = rig.mqtt.on(root)
    assert len(description.json()["children"]) == 2


async def test_the_entities_announced_for_a_device_are_readable_in_both_layouts() -> None:
    for device_based in (True, False):
        rig = make_rig()
        discovery = with_discovery(rig, device_based)
        connect(rig, {})
        rig.snapshot(light(), plug())
        entities = discovery.entities(rig.bridge.devices[PLUG])
        assert {(e["platform"], e["unique_id"]) for e in entities} == {
            ("light", "aqara_mqtt_lumi_158d0002c660dc_ep1_light"),
            ("sensor", "aqara_mqtt_lumi_158d0002c660dc_ep1_energy_management_current_power")}
        assert all(e["topic"] in configs(plug(), device_based) for e in entities)
        discovery.published.pop(PLUG)
        assert discovery.entities(rig.bridge.devices[PLUG]) == []  # nothing announced


HUB = "lumi1.54ef44100000"


def hub_device() -> Device:
    hub = plug(device_id=HUB)
    hub.model = "lumi.gateway.acn012"
    return hub


def order_of_announcement(rig: Rig) -> tuple[int, list[int]]:
    """Where the hub's own config was sent, and where configs naming it as via_device were."""
    hub_at, children = -1, []
    for index, sent in enumerate(s for s in rig.mqtt.sent if s.topic.startswith(PREFIX)):
        document = json.loads(sent.payload)
        if document["dev"]["ids"] == ["aqara_mqtt_" + HUB.replace(".", "_")]:
            hub_at = index if hub_at < 0 else hub_at
        elif document["dev"].get("via_device") == "aqara_mqtt_" + HUB.replace(".", "_"):
            children.append(index)
    return hub_at, children


async def test_the_hub_is_announced_before_the_devices_that_name_it() -> None:
    """Home Assistant creates a via_device it does not know as a bare placeholder, and a
    device only gets its suggested area when it is created: the hub must come first."""
    for snapshot_first in (False, True):
        rig = make_rig()
        with_discovery(rig)
        if snapshot_first:  # the hub answered before the retained configs were learned
            rig.snapshot(light(), plug(), hub_device())
            connect(rig, {})
        else:  # the snapshot lists the hub last: its devices are announced again, after it
            connect(rig, {})
            rig.snapshot(light(), plug(), hub_device())
        hub_at, children = order_of_announcement(rig)
        assert hub_at >= 0
        assert len(children) == 2, snapshot_first
        assert hub_at < min(children), snapshot_first
