"""The web page's sans-IO parts: the bounded per-browser feed, the web output fed by a real core
(writes through the validated path, their answers, log lines), its documents and its config."""

from __future__ import annotations

import time

import pytest

from bridge.config import parse_config
from bridge.model import Availability, TraitAddress, TraitChanged
from bridge.topics import TopicScheme
from bridge.web.feed import RESYNC, ClientFeed
from bridge.web.output import WebOutput
from bridge.web.server import is_rebinding_proof
from bridge.web.views import device_detail
from tests.unit.test_core import LIGHT, light, make_rig

ONOFF = TraitAddress(LIGHT, 1, "Output", "OnOff")
LEVEL = TraitAddress(LIGHT, 1, "LevelControl", "CurrentLevel")


async def test_a_trait_keeps_only_its_latest_queued_value() -> None:
    feed = ClientFeed(limit=10)
    feed.put({"n": 1}, "a")
    feed.put({"n": 2}, "b")
    feed.put({"n": 3}, "a")
    feed.put({"log": 1})
    feed.put({"log": 2})
    assert await feed.batch() == [{"n": 2}, {"n": 3}, {"log": 1}, {"log": 2}]
    assert feed.dropped == 0


async def test_an_overflowing_feed_is_dropped_whole_and_asks_for_a_resync() -> None:
    feed = ClientFeed(limit=3)
    for n in range(10):
        feed.put({"n": n}, n)
    assert len(feed) == 0
    assert feed.dropped == 10
    assert await feed.batch() == [RESYNC]
    feed.put({"n": 99}, 99)  # then it starts afresh
    assert await feed.batch() == [{"n": 99}]


async def test_a_stalled_browser_costs_the_bridge_bounded_memory_and_no_waiting() -> None:
    rig = make_rig()
    web = WebOutput(TopicScheme("aqara"), feed_limit=100)
    rig.bridge.add_output(web)
    ids = [f"lumi1.{n:012x}" for n in range(300)]
    rig.snapshot(*(light(device_id) for device_id in ids))
    stalled = web.open_feed()  # never read
    start = time.perf_counter()
    for n in range(30_000):
        rig.event(TraitChanged(TraitAddress(ids[n % 300], 1, "LevelControl", "CurrentLevel"),
                               (n // 300) % 100))
    elapsed = time.perf_counter() - start
    assert elapsed < 10  # 30,000 changes, every one published to MQTT as well
    assert rig.mqtt.retained[f"aqara/{ids[-1]}/1/LevelControl/CurrentLevel"] == "99"
    assert len(stalled) <= 100
    assert stalled.dropped > 29_000
    assert await stalled.batch() == [RESYNC]


async def test_a_slow_browser_gets_the_latest_value_of_each_trait() -> None:
    rig = make_rig()
    web = WebOutput(TopicScheme("aqara"), feed_limit=100)
    rig.bridge.add_output(web)
    rig.snapshot(light())
    slow = web.open_feed()
    for n in range(1000):
        rig.event(TraitChanged(LEVEL, n % 100))
        rig.event(TraitChanged(TraitAddress(LIGHT, 1, "Effects", "Label"), f"label {n}"))
    assert [(m["path"], m["value"]) for m in await slow.batch()] == [
        ("1.LevelControl.CurrentLevel", 99), ("1.Effects.Label", "label 999")]  # latest last
    assert slow.dropped == 0


async def test_a_write_goes_through_the_core_and_returns_the_hubs_answer() -> None:
    rig = make_rig()
    web = WebOutput(TopicScheme("aqara"))
    rig.bridge.add_output(web)
    rig.snapshot(light())
    entry = rig.bridge.devices[LIGHT]
    assert (await web.write(entry, ONOFF, "false"))["status"] == "ok"
    assert [[(i.address, i.value) for i in batch] for batch in rig.backend.writes] == [
        [(ONOFF, False)]]
    assert rig.bridge.writes_queued == 1

    rig.backend.failures[ONOFF] = (1001, "device busy")
    answer = await web.write(entry, ONOFF, "true")
    assert answer["status"] == "error"
    assert "device busy (code 1001)" in answer["error"]["message"]
    assert rig.bridge.writes_failed == 1


async def test_a_rejected_write_says_why_and_reaches_the_log_stream() -> None:
    rig = make_rig()
    web = WebOutput(TopicScheme("aqara"))
    rig.bridge.add_output(web)
    rig.snapshot(light())
    feed = web.open_feed()
    answer = await web.write(rig.bridge.devices[LIGHT], LEVEL, "250")
    assert answer["status"] == "error"
    assert answer["error"]["code"] == "rejected"
    assert "250" in answer["error"]["message"]
    assert rig.backend.writes == []
    assert rig.bridge.writes_rejected == 1
    (line,) = [m for m in await feed.batch() if m["t"] == "log"]
    assert line["level"] == "warning"
    assert line["topic"] == "aqara/lumi1.54ef44d1e6a0/1/LevelControl/CurrentLevel/set"
    assert line["message"] == f"rejected: {answer['error']['message']}"
    # the page's writes are answered to the page only: nothing on a response topic
    assert [s.topic for s in rig.mqtt.sent if "response" in s.topic] == []


async def test_availability_and_device_changes_are_streamed() -> None:
    rig = make_rig()
    web = WebOutput(TopicScheme("aqara"))
    rig.bridge.add_output(web)
    feed = web.open_feed()
    rig.snapshot(light())
    rig.event(Availability(LIGHT, False))
    messages = await feed.batch()
    assert [m["t"] for m in messages] == ["device", "status", "availability"]
    assert messages[0]["device"]["friendly_name"] == LIGHT
    assert messages[2]["available"] is False
    web.close_feed(feed)
    rig.event(Availability(LIGHT, True))
    assert len(feed) == 0


async def test_the_device_document_has_every_trait_with_spec_value_and_topic() -> None:
    rig = make_rig()
    rig.snapshot(light())
    doc = device_detail(rig.bridge.devices[LIGHT], None, [], rig.bridge.topics)
    assert doc["events"] is None  # a light fires no momentary events
    traits = {t["path"]: t for t in doc["traits"]}
    assert traits["1.LevelControl.CurrentLevel"]["topic"] == (
        "aqara/lumi1.54ef44d1e6a0/1/LevelControl/CurrentLevel")
    assert traits["1.LevelControl.CurrentLevel"]["value"] == 40
    assert traits["1.LevelControl.CurrentLevel"]["spec"]["writable"] is True
    assert traits["1.Effects.Effect"]["spec"]["enums"][0] == {"key": "Off", "value": "0"}
    assert traits["0.BasicInformation.FirmwareRevision"]["spec"]["writable"] is False


def test_the_frontend_section_defaults_to_off_on_loopback_and_hides_its_token() -> None:
    base = "backends: [{type: studio, name: h, url: 'ws://127.0.0.1:1', token: t}]\n"
    config = parse_config(base, "c.yaml")
    assert (config.frontend.enabled, config.frontend.host) == (False, "127.0.0.1")
    config = parse_config(base + "frontend: {enabled: true, token: page-secret-42, "
                          "base_path: /aqara/}\n", "c.yaml")
    assert config.frontend.base_path == "/aqara"
    assert "page-secret-42" in config.secret_values()
    assert "page-secret-42" not in repr(config.summary())
    with pytest.raises(Exception, match=r"frontend\.base_path: .*path such as /aqara"):
        parse_config(base + "frontend: {base_path: 'aqara'}\n", "c.yaml")


@pytest.mark.parametrize(("host", "listen", "accepted"), [
    ("127.0.0.1:8088", "127.0.0.1", True),
    ("[::1]:8088", "127.0.0.1", True),
    ("LOCALHOST:8088", "127.0.0.1", True),
    ("192.168.1.20:8088", "0.0.0.0", True),
    ("bridge.lan:8088", "bridge.lan", True),
    ("evil.example:8088", "127.0.0.1", False),
    ("127.0.0.1.evil.example", "127.0.0.1", False),
    ("", "127.0.0.1", False),
])
def test_only_names_no_other_site_can_take_over_pass_without_a_token(
        host: str, listen: str, accepted: bool) -> None:
    assert is_rebinding_proof(host, listen) is accepted
