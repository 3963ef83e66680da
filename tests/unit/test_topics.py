"""The topic scheme: sanitising levels, building topics and parsing incoming ones."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bridge.model import TraitAddress
from bridge.topics import (
    MAX_LEVEL_LENGTH,
    BadTopic,
    BridgeRequest,
    DeviceGet,
    DeviceSet,
    Incoming,
    TopicScheme,
    TraitGet,
    TraitSet,
    device_level,
    sanitize_level,
)

ADDRESS = TraitAddress("lumi1.54ef448a0b73", 2, "Output", "OnOff")


def matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic filter matching (enough for the bridge's filters)."""
    filter_levels = topic_filter.split("/")
    levels = topic.split("/")
    for i, level in enumerate(filter_levels):
        if level == "#":
            return len(levels) >= i
        if i >= len(levels):
            return False
        if level != "+" and level != levels[i]:
            return False
    return len(levels) == len(filter_levels)


# ---- sanitize_level ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kitchen_switch", "kitchen_switch"),
        ("lumi1.54ef448a0b73", "lumi1.54ef448a0b73"),
        ("Living room lamp", "Living room lamp"),
        ("  padded  ", "padded"),
        ("a+b#c/d", "a_b_c_d"),
        ("a\x00b", "a_b"),
        ("a\x1bb\x7fc\x85d", "a_b_c_d"),
        ("\ttabbed\n", "tabbed"),
        ("", "_"),
        ("   ", "_"),
        ("/", "_"),
        ("+", "_"),
        ("Küche ☕", "Küche ☕"),
        ("a\ud800b", "a_b"),
        ("a\ufffeb\U0001ffffc", "a_b_c"),
        ("\x00 x", "_ x"),
        ("bridge", "bridge"),
        ("$SYS", "$SYS"),
    ],
)
def test_sanitize_level_examples(text: str, expected: str) -> None:
    assert sanitize_level(text) == expected


def test_sanitize_level_truncates_long_text() -> None:
    assert sanitize_level("x" * 1000) == "x" * MAX_LEVEL_LENGTH
    # A cut that lands on a space does not leave trailing whitespace.
    assert sanitize_level("x" * 255 + " yz") == "x" * 255


@given(st.text())
@example("\x00")
@example("+#/")
@example(" \ud800 ")
@example("a" * 300)
def test_sanitize_level_is_always_safe(text: str) -> None:
    level = sanitize_level(text)
    assert level
    assert len(level) <= MAX_LEVEL_LENGTH
    assert not any(c in level for c in "+#/\x00")
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in level)
    assert level == level.strip()
    level.encode("utf-8")  # no lone surrogates
    assert sanitize_level(level) == level  # idempotent


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp"),
                                      blacklist_characters="+#/\ufffe\uffff"),
               min_size=1, max_size=MAX_LEVEL_LENGTH))
def test_sanitize_level_keeps_safe_text(text: str) -> None:
    if any(0xFDD0 <= ord(c) <= 0xFDEF or (ord(c) & 0xFFFE) == 0xFFFE for c in text):
        return
    assert sanitize_level(text) == text.strip()


def test_device_level_reserves_bridge() -> None:
    assert device_level("bridge") == "bridge_"
    assert device_level(" bridge ") == "bridge_"
    assert device_level("bridge_") == "bridge_"
    assert device_level("Bridge") == "Bridge"
    assert device_level("a/b") == "a_b"


@given(st.text())
def test_device_level_never_bridge_and_idempotent(name: str) -> None:
    level = device_level(name)
    assert level != "bridge"
    assert device_level(level) == level


# ---- building ---------------------------------------------------------------------------------


def test_build_topics() -> None:
    t = TopicScheme("aqara")
    assert t.base == "aqara"
    assert t.bridge("state") == "aqara/bridge/state"
    assert t.device("kitchen") == "aqara/kitchen"
    assert t.availability("kitchen") == "aqara/kitchen/availability"
    assert t.trait("kitchen", ADDRESS) == "aqara/kitchen/2/Output/OnOff"
    assert t.response("device/rename") == "aqara/bridge/response/device/rename"
    assert t.response("devices") == "aqara/bridge/response/devices"


def test_build_sanitises_device_data() -> None:
    t = TopicScheme("aqara")
    address = TraitAddress("x", 0, "Out/put", "On#Off+")
    assert t.trait("my/dev", address) == "aqara/my_dev/0/Out_put/On_Off_"
    assert t.device("bridge") == "aqara/bridge_"
    assert t.availability("") == "aqara/_/availability"
    assert t.response("a/+/#") == "aqara/bridge/response/a/_/_"


def test_subscriptions() -> None:
    assert TopicScheme("aqara").subscriptions() == [
        "aqara/+/set",
        "aqara/+/get",
        "aqara/+/+/+/+/set",
        "aqara/+/+/+/+/get",
        "aqara/bridge/request/#",
    ]


def test_multi_level_base() -> None:
    t = TopicScheme("home/aqara")
    assert t.trait("dev", ADDRESS) == "home/aqara/dev/2/Output/OnOff"
    assert t.parse("home/aqara/dev/2/Output/OnOff/set") == TraitSet("dev", 2, "Output", "OnOff")
    assert t.parse("home/aqara/bridge/request/devices") == BridgeRequest("devices")
    assert t.parse("home/dev/set") is None
    assert t.subscriptions()[0] == "home/aqara/+/set"


@pytest.mark.parametrize("base", ["", "/aqara", "aqara/", "a//b", "a/+", "a#", "a\x00", "$SYS"])
def test_bad_base_is_refused(base: str) -> None:
    with pytest.raises(ValueError, match="base topic"):
        TopicScheme(base)


# ---- parsing ----------------------------------------------------------------------------------

PARSE_CASES: list[tuple[str, Incoming | None]] = [
    ("aqara/kitchen/2/Output/OnOff/set", TraitSet("kitchen", 2, "Output", "OnOff")),
    ("aqara/kitchen/2/Output/OnOff/get", TraitGet("kitchen", 2, "Output", "OnOff")),
    ("aqara/kitchen/02/Output/OnOff/get", TraitGet("kitchen", 2, "Output", "OnOff")),
    ("aqara/Living room/0/A/B/set", TraitSet("Living room", 0, "A", "B")),
    ("aqara/kitchen/set", DeviceSet("kitchen")),
    ("aqara/kitchen/get", DeviceGet("kitchen")),
    ("aqara/bridge/request/devices", BridgeRequest("devices")),
    ("aqara/bridge/request/device/rename", BridgeRequest("device/rename")),
    ("aqara/bridge/request/device.rename", BridgeRequest("device/rename")),
    ("aqara/bridge/request/tuya.room.devices.add", BridgeRequest("tuya/room/devices/add")),
    ("aqara/bridge/request/", BadTopic("missing request command")),
    ("aqara/bridge/request", BadTopic("missing request command")),
    ("aqara/kitchen/x/Output/OnOff/set", BadTopic("endpoint id 'x' is not an integer")),
    ("aqara/kitchen/-1/Output/OnOff/set", BadTopic("endpoint id '-1' is not an integer")),
    ("aqara/kitchen/1.5/Output/OnOff/get", BadTopic("endpoint id '1.5' is not an integer")),
    ("aqara/kitchen/ 1/Output/OnOff/get", BadTopic("endpoint id ' 1' is not an integer")),
    ("aqara/kitchen/\u0661/Output/OnOff/get", BadTopic("endpoint id '\u0661' is not an integer")),
    ("aqara/kitchen//Output/OnOff/set", BadTopic("endpoint id '' is not an integer")),
    ("aqara/kitchen/" + "9" * 19 + "/F/T/set",
     BadTopic(f"endpoint id '{'9' * 19}' is out of range")),
    ("aqara//2/Output/OnOff/set", BadTopic("empty topic level")),
    ("aqara/kitchen/2//OnOff/set", BadTopic("empty topic level")),
    ("aqara/kitchen/2/Output//set", BadTopic("empty topic level")),
    ("aqara//set", BadTopic("empty device level")),
    ("aqara//get", BadTopic("empty device level")),
    # Not ours: the bridge namespace, other shapes, other bases.
    ("aqara/bridge/set", None),
    ("aqara/bridge/get", None),
    ("aqara/bridge", None),
    ("aqara/bridge/state", None),
    ("aqara/bridge/response/device/options/set", None),
    ("aqara/bridge/x/y/z/set", None),
    ("aqara/kitchen", None),
    ("aqara/kitchen/availability", None),
    ("aqara/kitchen/2/Output/OnOff", None),
    ("aqara/kitchen/2/Output/OnOff/put", None),
    ("aqara/kitchen/put", None),
    ("aqara/set", None),
    ("aqara", None),
    ("aqara/", None),
    ("aqarax/kitchen/set", None),
    ("other/kitchen/set", None),
    ("", None),
    ("aqara/a/b/c/d/e/f/set", None),
]


@pytest.mark.parametrize(("topic", "expected"), PARSE_CASES)
def test_parse(topic: str, expected: Incoming | None) -> None:
    assert TopicScheme("aqara").parse(topic) == expected


def test_bad_topic_reason_is_short_for_long_levels() -> None:
    result = TopicScheme("aqara").parse("aqara/d/" + "x" * 500 + "/F/T/set")
    assert isinstance(result, BadTopic)
    assert len(result.reason) < 100


names = st.text(max_size=40)
codes = st.text(max_size=20)
endpoints = st.integers(min_value=0, max_value=10**12)


@given(names, endpoints, codes, codes, st.sampled_from(["set", "get"]))
@example("bridge", 0, "bridge", "request", "set")
@example("", 1, "", "", "get")
def test_built_trait_topics_parse_back(
    name: str, endpoint: int, function_code: str, trait_code: str, action: str
) -> None:
    t = TopicScheme("aqara")
    address = TraitAddress("id", endpoint, function_code, trait_code)
    topic = t.trait(name, address)
    assert topic.count("/") == 4
    assert not any(c in topic for c in "+#\x00")
    assert not any(matches(f, topic) for f in t.subscriptions())  # no echo of our state
    cls = TraitSet if action == "set" else TraitGet
    assert t.parse(f"{topic}/{action}") == cls(
        device_level(name), endpoint, sanitize_level(function_code), sanitize_level(trait_code)
    )


@given(names)
def test_built_device_topics_parse_back(name: str) -> None:
    t = TopicScheme("aqara")
    assert t.parse(t.device(name) + "/set") == DeviceSet(device_level(name))
    assert t.parse(t.device(name) + "/get") == DeviceGet(device_level(name))
    for own in (t.device(name), t.availability(name)):
        assert t.parse(own) is None
        assert not any(matches(f, own) for f in t.subscriptions())


@given(st.lists(st.text(alphabet="ab/", max_size=3), min_size=1, max_size=5).map("/".join))
def test_request_commands_round_trip(command: str) -> None:
    t = TopicScheme("aqara")
    assert t.parse(f"aqara/bridge/request/{command}") == (
        BridgeRequest(command) if command else BadTopic("missing request command")
    )


levels = st.sampled_from(["aqara", "bridge", "request", "response", "set", "get", "dev", "2",
                          "x", "", "Output", "availability"])


@given(st.lists(levels, min_size=1, max_size=7).map("/".join))
def test_parse_agrees_with_subscriptions(topic: str) -> None:
    """Everything parse understands is subscribed; everything subscribed is parsed, except the
    bridge's own namespace (its responses) which is ignored."""
    t = TopicScheme("aqara")
    result = t.parse(topic)
    subscribed = any(matches(f, topic) for f in t.subscriptions())
    if result is not None:
        assert subscribed
    elif subscribed:
        assert topic.startswith("aqara/bridge")


@given(st.text())
def test_parse_never_raises(topic: str) -> None:
    t = TopicScheme("aqara")
    result = t.parse(topic)
    if not topic.startswith("aqara/"):
        assert result is None


def test_response_mirrors_how_the_request_wrote_the_command() -> None:
    t = TopicScheme("aqara")
    assert t.response_to("aqara/bridge/request/device.rename") == \
        "aqara/bridge/response/device.rename"
    assert t.response_to("aqara/bridge/request/device/rename") == \
        "aqara/bridge/response/device/rename"


def test_the_bridge_never_needs_a_five_level_topic_of_its_own() -> None:
    """``<base>/+/+/+/+`` is the trait wildcard: dotted commands keep bridge topics shorter."""
    from bridge.api import COMMANDS
    t = TopicScheme("aqara")
    for command in COMMANDS:
        dotted = command.replace("/", ".")
        assert t.parse(f"aqara/bridge/request/{dotted}") == BridgeRequest(command)
        for topic in (f"aqara/bridge/request/{dotted}",
                      t.response_to(f"aqara/bridge/request/{dotted}")):
            assert topic.count("/") == 3, topic


def test_portable_style_spells_levels_without_dots_spaces_or_nats_wildcards() -> None:
    scheme = TopicScheme("aqara", "portable")
    address = TraitAddress("lumi1.54ef44d1e6a0", 1, "Air Quality", "PM2.5Density")
    assert scheme.trait("lumi1.54ef44d1e6a0", address) == (
        "aqara/lumi1_54ef44d1e6a0/1/Air_Quality/PM2_5Density")
    assert scheme.device("kitchen light*>") == "aqara/kitchen_light__"
    assert scheme.device_level("bridge") == "bridge_"
    assert scheme.availability("a.b") == "aqara/a_b/availability"
    assert scheme.response("device/rename") == "aqara/bridge/response/device/rename"
    standard = TopicScheme("aqara")
    assert standard.trait("lumi1.54ef44d1e6a0", address) == (
        "aqara/lumi1.54ef44d1e6a0/1/Air Quality/PM2.5Density")
    with pytest.raises(ValueError, match="portable"):
        TopicScheme("home.aqara", "portable")
    with pytest.raises(ValueError, match="topic style"):
        TopicScheme("aqara", "dotted")
