"""Trait topics kept as a per-device prefix, a shared layout and a mask of retained traits."""

from __future__ import annotations

import gc

from bridge.entries import DeviceEntry
from bridge.model import Device, TraitAddress
from bridge.outputs.trait_topics import DeviceTopics, Layouts, places
from bridge.topics import TopicScheme
from tests.unit.test_core import BOOL_RW, LIGHT, PLUG, FakeBackend, light, make_device, plug

SCHEME = TopicScheme("home/aqara")


def published(device: Device, layouts: Layouts, level: str = "Dining Light") -> DeviceTopics:
    entry = DeviceEntry(device, FakeBackend("home"), level, level)
    return DeviceTopics(entry, level, SCHEME.trait_prefix(level), layouts.of(device))


def test_every_topic_is_the_schemes_trait_topic() -> None:
    odd = make_device("odd", {2: {"Out/put": {"On+Off#": (BOOL_RW, True)}}})
    layouts = Layouts()
    for device in (light(), plug(), odd):
        topics = published(device, layouts, "Hall/Lamp")
        for address, _trait in device.iter_traits():
            assert topics.topic(address) == SCHEME.trait("Hall/Lamp", address)
    assert SCHEME.trait_prefix("Hall/Lamp") == "home/aqara/Hall_Lamp/"
    assert topics.topic(TraitAddress("odd", 2, "Out/put", "On+Off#")) == (
        "home/aqara/Hall_Lamp/2/Out_put/On_Off_")


def test_devices_with_the_same_traits_share_one_layout() -> None:
    layouts = Layouts()
    first, second = layouts.of(light("a")), layouts.of(light("b", on=False, level=3))
    assert first is second
    other = layouts.of(plug())
    assert other is not first
    assert len(layouts) == 2
    assert first.places == places(light())
    assert first.places[0] == (0, "BasicInformation", "FirmwareRevision")


def test_a_layout_no_device_uses_is_forgotten() -> None:
    layouts = Layouts()
    layout = layouts.of(plug())
    assert len(layouts) == 1
    del layout
    gc.collect()
    assert len(layouts) == 0


def test_marked_traits_are_the_retained_topics() -> None:
    topics = published(light(), Layouts())
    assert topics.retained_topics() == set()
    on = topics.mark(TraitAddress(LIGHT, 1, "Output", "OnOff"))
    level = topics.mark(TraitAddress(LIGHT, 1, "LevelControl", "CurrentLevel"))
    assert on == "home/aqara/Dining Light/1/Output/OnOff"
    assert topics.mark(TraitAddress(LIGHT, 1, "Output", "OnOff")) == on  # idempotent
    assert topics.retained_topics() == {on, level}
    assert len(topics.trait_topics()) == len(light().iter_traits())
    topics.prefix = SCHEME.trait_prefix("Hall")  # a rename: the same traits, another level
    assert topics.retained_topics() == {"home/aqara/Hall/1/Output/OnOff",
                                        "home/aqara/Hall/1/LevelControl/CurrentLevel"}


def test_relayout_returns_the_lost_traits_and_keeps_the_others_marked() -> None:
    layouts = Layouts()
    topics = published(plug(), layouts, "plug")
    on = topics.mark(TraitAddress(PLUG, 1, "Output", "OnOff"))
    power = topics.mark(TraitAddress(PLUG, 1, "EnergyManagement", "CurrentPower"))
    smaller = make_device(PLUG, {1: {"Output": {"OnOff": (BOOL_RW, False)}}})
    assert topics.relayout(layouts.of(smaller)) == {power}
    assert topics.retained_topics() == {on}
    assert topics.relayout(layouts.of(plug())) == set()  # the trait is back, not yet published
    assert topics.retained_topics() == {on}


def test_codes_that_sanitise_alike_get_topics_of_their_own() -> None:
    """Two traits never share a topic (each value would overwrite the other's): the second
    of two codes spelled alike as a level gets a numbered suffix, and /set finds either."""
    device = make_device("x", {1: {"a/b": {"t": (BOOL_RW, True)}, "a_b": {"t": (BOOL_RW, True)}}})
    topics = published(device, Layouts(), "x")
    first = topics.mark(TraitAddress("x", 1, "a/b", "t"))
    second = topics.mark(TraitAddress("x", 1, "a_b", "t"))
    assert (first, second) == ("home/aqara/x/1/a_b/t", "home/aqara/x/1/a_b/t_2")
    assert topics.layout.place_of("1/a_b/t") == (1, "a/b", "t")
    assert topics.layout.place_of("1/a_b/t_2") == (1, "a_b", "t")
    assert topics.layout.place_of("1/nope/t") is None


def test_portable_layouts_spell_codes_without_dots_and_find_them_back() -> None:
    device = make_device("x", {1: {"Air Quality": {"PM2.5Density": (BOOL_RW, True)}}})
    layout = Layouts(TopicScheme("aqara", "portable")).of(device)
    assert layout.slots[(1, "Air Quality", "PM2.5Density")][1] == "1/Air_Quality/PM2_5Density"
    assert layout.place_of("1/Air_Quality/PM2_5Density") == (1, "Air Quality", "PM2.5Density")
    standard = Layouts(TopicScheme("aqara")).of(device)
    assert standard.slots[(1, "Air Quality", "PM2.5Density")][1] == "1/Air Quality/PM2.5Density"
