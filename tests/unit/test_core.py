"""The bridge core without sockets: a fake backend, a fake publisher that behaves like a broker's
retained store, and the asyncio loop only for the core's call_soon/call_later and tasks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from bridge import __version__
from bridge.app import core_options
from bridge.backends.base import Backend, BackendError, EventSink
from bridge.backends.studio.client import StudioBackend
from bridge.backends.studio.config import StudioBackendConfig
from bridge.config import parse_config
from bridge.core import Bridge, CoreOptions
from bridge.messages import IncomingMessage
from bridge.model import (
    Availability,
    BackendStatus,
    Device,
    DeviceAdded,
    DeviceRemoved,
    DeviceRenamed,
    DeviceUpdated,
    Endpoint,
    EnumOption,
    Event,
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

# ---- specs and devices --------------------------------------------------------------------------

STR_RO = TraitSpec(TraitType.STRING, format="String")
BOOL_RO = TraitSpec(TraitType.BOOLEAN, format="Bool")
BOOL_RW = TraitSpec(TraitType.BOOLEAN, format="Bool", writable=True)
LEVEL = TraitSpec(TraitType.NUMBER, format="uint8", unit="%", min=0, max=100, step=1, writable=True)
FLOAT_RW = TraitSpec(TraitType.NUMBER, format="float", unit="K", min=153, max=500, writable=True)
ENUM_RW = TraitSpec(
    TraitType.ENUM,
    format="Enum",
    writable=True,
    enums=(EnumOption("Off", "0"), EnumOption("Rainbow", "1"), EnumOption("Candle", "2")),
)
OTHER_RW = TraitSpec(TraitType.OTHER, writable=True)
STR_RW = TraitSpec(TraitType.STRING, writable=True)
WRITE_ONLY = TraitSpec(TraitType.STRING, readable=False, writable=True, subscribable=False)

LIGHT = "lumi1.54ef44d1e6a0"
PLUG = "lumi.158d0002c660dc"

TraitTree = Mapping[int, Mapping[str, Mapping[str, tuple[TraitSpec, Any]]]]


def make_device(
    device_id: str,
    tree: TraitTree,
    name: str = "A device",
    online: bool = True,
    backend: str = "home",
    model: str = "lumi.test",
) -> Device:
    return Device(
        id=device_id,
        name=name,
        backend=backend,
        model=model,
        types=("Light",),
        online=online,
        endpoints={
            ep: Endpoint(
                ep,
                ("Root",) if ep == 0 else ("Light",),
                {
                    fn: Function(
                        fn,
                        {code: Trait(code, spec, value) for code, (spec, value) in traits.items()},
                    )
                    for fn, traits in functions.items()
                },
            )
            for ep, functions in tree.items()
        },
    )


def light(
    device_id: str = LIGHT,
    name: str = "Dining Light",
    online: bool = True,
    on: bool = True,
    level: int = 40,
    backend: str = "home",
) -> Device:
    return make_device(
        device_id,
        {
            0: {
                "BasicInformation": {
                    "FirmwareRevision": (STR_RO, "1.2.3"),
                    "Reachable": (BOOL_RO, True),
                }
            },
            1: {
                "Output": {"OnOff": (BOOL_RW, on)},
                "LevelControl": {"CurrentLevel": (LEVEL, level)},
                "ColorControl": {"ColorTemperature": (FLOAT_RW, 370.5)},
                "Effects": {
                    "Effect": (ENUM_RW, "2"),
                    "Config": (OTHER_RW, {"a": [1, 2]}),
                    "Label": (STR_RW, "hello"),
                    "Secret": (WRITE_ONLY, "pin-1234"),
                    "Unknown": (STR_RW, None),
                },
            },
        },
        name=name,
        online=online,
        backend=backend,
    )


def plug(
    device_id: str = PLUG, on: bool = False, online: bool = True, backend: str = "home"
) -> Device:
    return make_device(
        device_id,
        {
            1: {
                "Output": {"OnOff": (BOOL_RW, on)},
                "EnergyManagement": {
                    "CurrentPower": (TraitSpec(TraitType.NUMBER, format="float", unit="W"), 12.5)
                },
            },
        },
        name="Kitchen Plug",
        online=online,
        backend=backend,
    )


LIGHT_PAYLOADS = {
    "0/BasicInformation/FirmwareRevision": "1.2.3",
    "0/BasicInformation/Reachable": "true",
    "1/Output/OnOff": "true",
    "1/LevelControl/CurrentLevel": "40",
    "1/ColorControl/ColorTemperature": "370.5",
    "1/Effects/Effect": "Candle",
    "1/Effects/Config": '{"a":[1,2]}',
    "1/Effects/Label": "hello",
}


def addr(device_id: str, endpoint: int, function: str, trait: str) -> TraitAddress:
    return TraitAddress(device_id, endpoint, function, trait)


# ---- fakes --------------------------------------------------------------------------------------


class Waiter:
    """An asyncio condition re-checked whenever the fake it belongs to records something."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def notify(self) -> None:
        self._changed.set()

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 3.0) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                result = predicate()
                if result:
                    return result
                self._changed.clear()
                await self._changed.wait()


class FakeBackend(Backend):
    """Records writes and reads; ``failures``/``write_error``/``read_error`` make it fail."""

    kind = "fake"

    def __init__(self, name: str = "home") -> None:
        super().__init__(name)
        self.connected = True
        self.detail = "connected"
        self.token = "fake-backend-secret-token"
        self.writes: list[list[WriteItem]] = []
        self.reads: list[list[TraitAddress]] = []
        self.values: dict[TraitAddress, Any] = {}
        self.failures: dict[TraitAddress, tuple[int | str | None, str]] = {}
        self.write_error: BaseException | None = None
        self.read_error: BaseException | None = None
        self.devices: list[Device] = []
        self.changed = Waiter()

    async def run(self, sink: EventSink) -> None:  # pragma: no cover - not used by the core
        await asyncio.Event().wait()

    async def write(self, items: Sequence[WriteItem]) -> list[WriteFailure]:
        self.writes.append(list(items))
        self.changed.notify()
        if self.write_error is not None:
            raise self.write_error
        return [
            WriteFailure(item, *self.failures[item.address])
            for item in items
            if item.address in self.failures
        ]

    async def read(self, addresses: Sequence[TraitAddress]) -> dict[TraitAddress, Any]:
        self.reads.append(list(addresses))
        self.changed.notify()
        if self.read_error is not None:
            raise self.read_error
        return {a: self.values[a] for a in addresses if a in self.values}

    async def snapshot(self) -> list[Device]:  # pragma: no cover - not used by these tests
        return list(self.devices)

    async def probe(self) -> int:  # pragma: no cover - not used by the core
        return len(self.devices)


@dataclass(frozen=True)
class Sent:
    topic: str
    payload: str
    retain: bool
    properties: Any = None

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class FakePublisher:
    """Records every publication and keeps a broker-like retained store (empty payload deletes)."""

    sent: list[Sent] = field(default_factory=list)
    retained: dict[str, str] = field(default_factory=dict)
    changed: Waiter = field(default_factory=Waiter)
    subscribed: list[str] = field(default_factory=list)

    def publish(
        self,
        topic: str,
        payload: str | bytes | Callable[[], str | bytes],
        retain: bool = False,
        qos: int | None = None,
        properties: Any = None,
    ) -> None:
        if callable(payload):  # a lazily built document: the link builds it when sending
            payload = payload()
        text = payload.decode() if isinstance(payload, bytes) else payload
        self.sent.append(Sent(topic, text, retain, properties))
        if retain:
            if text == "":
                self.retained.pop(topic, None)
            else:
                self.retained[topic] = text
        self.changed.notify()

    def subscribe(self, filters: list[str], no_local: bool = True,
                  qos: int | None = None) -> None:
        self.subscribed.extend(filters)

    def unsubscribe(self, filters: list[str]) -> None:
        self.subscribed = [f for f in self.subscribed if f not in filters]

    def on(self, topic: str) -> list[Sent]:
        return [s for s in self.sent if s.topic == topic]

    def under(self, prefix: str) -> dict[str, str]:
        """Retained topics at or below ``prefix`` (a device's whole footprint)."""
        return {t: p for t, p in self.retained.items() if t == prefix or t.startswith(prefix + "/")}

    def logs(self) -> list[dict[str, Any]]:
        return [s.json() for s in self.on("aqara/bridge/log")]

    def events(self) -> list[dict[str, Any]]:
        return [s.json() for s in self.on("aqara/bridge/event")]

    def clear(self) -> None:
        self.sent.clear()


@dataclass
class Rig:
    bridge: Bridge
    backend: FakeBackend
    mqtt: FakePublisher
    tree: TopicTree

    def event(self, event: Event, backend: Backend | None = None) -> None:
        self.bridge.handle_event(backend or self.backend, event)

    def snapshot(self, *devices: Device, backend: Backend | None = None) -> None:
        self.event(Snapshot(tuple(devices)), backend)

    def send(
        self,
        topic: str,
        payload: str | bytes,
        retain: bool = False,
        response_topic: str | None = None,
        correlation: bytes | None = None,
    ) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        self.bridge.handle_message(
            IncomingMessage(topic, data, retain, response_topic, correlation)
        )

    async def replies(self, topic: str, count: int = 1) -> list[Sent]:
        found: list[Sent] = await self.mqtt.changed.wait_for(
            lambda: len(self.mqtt.on(topic)) >= count and self.mqtt.on(topic)
        )
        return found

    async def settle(self) -> None:
        """Flush pending writes now and wait for every hub call the core started."""
        await self.bridge.drain()
        await next_turn()


async def next_turn() -> None:
    """Let the loop run the callbacks scheduled so far (call_soon: the device documents)."""
    await asyncio.sleep(0)


def make_rig(backends: Sequence[FakeBackend] | None = None, **options: Any) -> Rig:
    backs = list(backends) if backends is not None else [FakeBackend()]
    options.setdefault("write_window", 0.0)
    core_options = CoreOptions(**options)
    bridge = Bridge(backs, core_options)
    tree = TopicTree(bridge.topics, core_options.device_state_topic,
                     core_options.clear_stale_topics)
    bridge.add_output(tree)
    mqtt = FakePublisher()
    bridge.attach(mqtt)
    return Rig(bridge, backs[0], mqtt, tree)


# ---- snapshot → retained topics -----------------------------------------------------------------


async def test_snapshot_publishes_every_readable_trait_retained() -> None:
    rig = make_rig()
    rig.snapshot(light())
    traits = {
        s.topic.removeprefix(f"aqara/{LIGHT}/"): s for s in rig.mqtt.sent if s.topic.count("/") == 4
    }
    assert {t: s.payload for t, s in traits.items()} == LIGHT_PAYLOADS
    assert all(s.retain for s in traits.values())
    # not readable (Secret) and no known value (Unknown): nothing published, not even "null"
    assert not [s for s in rig.mqtt.sent if "Secret" in s.topic or "Unknown" in s.topic]
    assert "pin-1234" not in json.dumps([s.payload for s in rig.mqtt.sent])
    assert rig.mqtt.retained[f"aqara/{LIGHT}/availability"] == "online"


async def test_device_document_is_flushed_once_per_loop_turn() -> None:
    rig = make_rig()
    rig.snapshot(light(), plug())
    assert rig.mqtt.on(f"aqara/{LIGHT}") == []  # not yet: once per loop turn
    for level in (1, 2, 3, 4):
        rig.event(TraitChanged(addr(LIGHT, 1, "LevelControl", "CurrentLevel"), level))
    rig.event(TraitChanged(addr(LIGHT, 1, "Output", "OnOff"), False))
    await next_turn()
    (document,) = rig.mqtt.on(f"aqara/{LIGHT}")
    assert document.retain
    assert document.json() == {
        "0": {"BasicInformation": {"FirmwareRevision": "1.2.3", "Reachable": True}},
        "1": {
            "Output": {"OnOff": False},
            "LevelControl": {"CurrentLevel": 4},
            "ColorControl": {"ColorTemperature": 370.5},
            "Effects": {"Effect": "Candle", "Config": {"a": [1, 2]}, "Label": "hello"},
        },
    }
    assert len(rig.mqtt.on(f"aqara/{PLUG}")) == 1
    # the next turn with changes publishes the document again, one more time only
    rig.event(TraitChanged(addr(PLUG, 1, "Output", "OnOff"), True))
    rig.event(TraitChanged(addr(PLUG, 1, "EnergyManagement", "CurrentPower"), 99.0))
    await next_turn()
    docs = rig.mqtt.on(f"aqara/{PLUG}")
    assert len(docs) == 2
    assert docs[-1].json() == {
        "1": {"Output": {"OnOff": True}, "EnergyManagement": {"CurrentPower": 99}}
    }
    assert len(rig.mqtt.on(f"aqara/{LIGHT}")) == 1


async def test_device_document_can_be_turned_off() -> None:
    rig = make_rig(device_state_topic=False)
    rig.snapshot(light())
    rig.event(TraitChanged(addr(LIGHT, 1, "Output", "OnOff"), False))
    await next_turn()
    assert rig.mqtt.on(f"aqara/{LIGHT}") == []
    assert rig.mqtt.retained[f"aqara/{LIGHT}/1/Output/OnOff"] == "false"


async def test_trait_payload_text_and_content_type_per_type() -> None:
    rig = make_rig()
    rig.snapshot(light())
    json_type, text_type = "application/json", "text/plain"
    cases: list[tuple[str, str, str, Any, str, str]] = [
        ("Output", "OnOff", "1/Output/OnOff", False, "false", json_type),
        ("LevelControl", "CurrentLevel", "1/LevelControl/CurrentLevel", 7, "7", json_type),
        ("ColorControl", "ColorTemperature", "1/ColorControl/ColorTemperature", 1e-7, "0.0000001",
         json_type),
        ("ColorControl", "ColorTemperature", "1/ColorControl/ColorTemperature", 250.0, "250",
         json_type),
        ("Effects", "Effect", "1/Effects/Effect", "1", "Rainbow", text_type),
        ("Effects", "Effect", "1/Effects/Effect", "9", "9", text_type),  # not an option: raw
        ("Effects", "Config", "1/Effects/Config", [1, {"b": None}], '[1,{"b":null}]', json_type),
        ("Effects", "Label", "1/Effects/Label", "ünïcode text", "ünïcode text", text_type),
        ("Effects", "Label", "1/Effects/Label", "1.0", "1.0", text_type),  # a string stays one
        ("Effects", "Label", "1/Effects/Label", "true", "true", text_type),
        ("Effects", "Label", "1/Effects/Label", "", '""', json_type),  # never an empty payload
    ]
    for function, trait, suffix, value, text, content_type in cases:
        endpoint = int(suffix[0])
        rig.event(TraitChanged(addr(LIGHT, endpoint, function, trait), value))
        sent = rig.mqtt.sent[-1]
        assert (sent.topic, sent.payload, sent.retain) == (f"aqara/{LIGHT}/{suffix}", text, True)
        assert sent.properties.content_type == content_type, (value, text)


# ---- availability -------------------------------------------------------------------------------


async def test_availability_follows_device_and_backend() -> None:
    other = FakeBackend("attic")
    rig = make_rig([FakeBackend("home"), other])
    rig.snapshot(light(), plug(online=False))
    rig.snapshot(light("lumi1.attic", backend="attic"), backend=other)
    avail = rig.mqtt.retained
    assert avail[f"aqara/{LIGHT}/availability"] == "online"
    assert avail[f"aqara/{PLUG}/availability"] == "offline"
    assert avail["aqara/lumi1.attic/availability"] == "online"

    rig.mqtt.clear()
    rig.event(Availability(PLUG, True))
    rig.event(Availability(PLUG, True))  # no change: published once
    assert [s.payload for s in rig.mqtt.on(f"aqara/{PLUG}/availability")] == ["online"]
    event = rig.mqtt.events()[0]
    assert event["type"] == "device_availability"
    assert event["online"] is True
    assert event["device"]["id"] == PLUG
    rig.event(Availability(LIGHT, False))
    assert avail[f"aqara/{LIGHT}/availability"] == "offline"
    rig.event(Availability(LIGHT, True))

    # the home backend loses its hub: its devices go offline, the attic's stay online
    rig.mqtt.clear()
    rig.backend.connected = False
    rig.backend.detail = "hub unreachable"
    rig.event(BackendStatus(False, "hub unreachable"))
    assert avail[f"aqara/{LIGHT}/availability"] == "offline"
    assert avail[f"aqara/{PLUG}/availability"] == "offline"
    assert avail["aqara/lumi1.attic/availability"] == "online"
    assert rig.mqtt.on("aqara/lumi1.attic/availability") == []
    info = json.loads(avail["aqara/bridge/info"])
    assert {b["name"]: b["connected"] for b in info["backends"]} == {"home": False, "attic": True}
    assert info["backends"][0]["detail"] == "hub unreachable"
    # a device reported online while its hub is away stays offline
    rig.event(Availability(PLUG, True))
    assert avail[f"aqara/{PLUG}/availability"] == "offline"

    # back: the status alone does not claim anything, the snapshot does
    rig.backend.connected = True
    rig.event(BackendStatus(True, "connected"))
    assert json.loads(avail["aqara/bridge/info"])["backends"][0]["connected"] is True
    rig.snapshot(light(), plug())
    assert avail[f"aqara/{LIGHT}/availability"] == "online"
    assert avail[f"aqara/{PLUG}/availability"] == "online"


async def test_events_for_unknown_devices_are_ignored() -> None:
    rig = make_rig()
    rig.snapshot(light())
    await next_turn()
    rig.mqtt.clear()
    rig.event(Availability("nope", False))
    rig.event(DeviceRemoved("nope"))
    rig.event(DeviceRenamed("nope", "x"))
    rig.event(TraitChanged(addr("nope", 1, "Output", "OnOff"), True))
    rig.event(TraitChanged(addr(LIGHT, 1, "Output", "Nope"), True))
    rig.event(TraitChanged(addr(LIGHT, 9, "Output", "OnOff"), True))
    rig.event(TraitChanged(addr(LIGHT, 1, "Nope", "OnOff"), True))
    await next_turn()
    assert rig.mqtt.sent == []
    assert rig.bridge.events_handled == 8


# ---- bridge/devices and bridge/info -------------------------------------------------------------


async def test_device_list_content() -> None:
    rig = make_rig(friendly_names={LIGHT: "dining_light"})
    rig.snapshot(light(), plug())
    listing = json.loads(rig.mqtt.retained["aqara/bridge/devices"])
    assert [d["id"] for d in listing] == [LIGHT, PLUG]
    first = listing[0]
    assert first["friendly_name"] == "dining_light"
    assert first["topic"] == "aqara/dining_light"
    assert first["name"] == "Dining Light"
    assert first["model"] == "lumi.test"
    assert first["types"] == ["Light"]
    assert first["backend"] == "home"
    assert listing[1]["friendly_name"] == PLUG
    assert listing[1]["topic"] == f"aqara/{PLUG}"
    endpoint = next(e for e in first["endpoints"] if e["id"] == 1)
    level = next(
        t for f in endpoint["functions"] if f["code"] == "LevelControl" for t in f["traits"]
    )
    assert level == {
        "code": "CurrentLevel",
        "type": "NUMBER",
        "format": "uint8",
        "unit": "%",
        "min": 0,
        "max": 100,
        "step": 1,
        "readable": True,
        "writable": True,
        "subscribable": True,
        "topic": "aqara/dining_light/1/LevelControl/CurrentLevel",
    }
    effects = next(f for f in endpoint["functions"] if f["code"] == "Effects")
    effect = next(t for t in effects["traits"] if t["code"] == "Effect")
    assert effect["enums"][2] == {"key": "Candle", "value": "2"}
    secret = next(t for t in effects["traits"] if t["code"] == "Secret")
    assert secret["readable"] is False  # listed with its spec, never with its value
    assert "pin-1234" not in rig.mqtt.retained["aqara/bridge/devices"]


async def test_device_list_is_not_published_before_any_snapshot() -> None:
    rig = make_rig()
    rig.bridge.on_mqtt_connected()
    assert rig.mqtt.retained["aqara/bridge/state"] == "online"
    assert "aqara/bridge/info" in rig.mqtt.retained
    assert "aqara/bridge/devices" not in rig.mqtt.retained
    rig.snapshot()
    assert json.loads(rig.mqtt.retained["aqara/bridge/devices"]) == []


async def test_bridge_info_has_version_backends_and_no_secrets() -> None:
    config = parse_config(
        """
mqtt: {url: "mqtt://user:mqtt-pass-77a1@127.0.0.1:1883", base_topic: aqara}
backends:
  - {type: studio, name: home, url: "ws://127.0.0.1:9", token: studio-token-5f2a9c}
devices:
  lumi1.54ef44d1e6a0: {name: dining_light}
""",
        "info-test.yaml",
    )
    spec = config.backends[0]
    assert isinstance(spec, StudioBackendConfig)
    studio = StudioBackend.from_config(spec)
    bridge = Bridge([studio], core_options(config))
    mqtt = FakePublisher()
    bridge.attach(mqtt)
    bridge.on_mqtt_connected()
    info = json.loads(mqtt.retained["aqara/bridge/info"])
    assert info["version"] == __version__
    assert isinstance(info["started_at"], int)
    assert info["backends"] == [
        {"name": "home", "type": "studio", "connected": False, "detail": "not started"}
    ]
    assert info["config"]["mqtt"]["authenticated"] is True
    assert info["config"]["mqtt"]["username"] == "user"
    assert info["config"]["devices"][LIGHT]["name"] == "dining_light"
    for sent in mqtt.sent:
        assert "studio-token-5f2a9c" not in sent.payload
        assert "mqtt-pass-77a1" not in sent.payload


# ---- dedupe -------------------------------------------------------------------------------------


async def test_unchanged_values_are_not_republished() -> None:
    rig = make_rig()
    rig.snapshot(light())
    await next_turn()
    rig.mqtt.clear()
    onoff = addr(LIGHT, 1, "Output", "OnOff")
    rig.event(TraitChanged(onoff, True))  # as in the snapshot
    rig.event(TraitChanged(addr(LIGHT, 1, "Effects", "Config"), {"a": [1, 2]}))
    await next_turn()
    assert rig.mqtt.sent == []
    rig.event(TraitChanged(onoff, False))
    rig.event(TraitChanged(onoff, False))
    rig.event(TraitChanged(onoff, True))
    await next_turn()
    topic = f"aqara/{LIGHT}/1/Output/OnOff"
    assert [s.payload for s in rig.mqtt.on(topic)] == ["false", "true"]
    assert len(rig.mqtt.on(f"aqara/{LIGHT}")) == 1


async def test_publish_unchanged_republishes_every_report() -> None:
    rig = make_rig(publish_unchanged=True)
    rig.snapshot(light())
    await next_turn()
    rig.mqtt.clear()
    onoff = addr(LIGHT, 1, "Output", "OnOff")
    for _ in range(3):
        rig.event(TraitChanged(onoff, True))
    assert [s.payload for s in rig.mqtt.on(f"aqara/{LIGHT}/1/Output/OnOff")] == ["true"] * 3


async def test_a_non_readable_trait_change_is_stored_but_not_published() -> None:
    rig = make_rig()
    rig.snapshot(light())
    await next_turn()
    rig.mqtt.clear()
    rig.event(TraitChanged(addr(LIGHT, 1, "Effects", "Secret"), "pin-9999"))
    await next_turn()
    assert rig.mqtt.sent == []


# ---- device lifecycle ---------------------------------------------------------------------------


async def test_device_added_updated_renamed_removed() -> None:
    rig = make_rig()
    rig.snapshot(light())
    await next_turn()
    rig.mqtt.clear()

    rig.event(DeviceAdded(plug(on=True)))
    await next_turn()
    assert rig.mqtt.retained[f"aqara/{PLUG}/1/Output/OnOff"] == "true"
    assert rig.mqtt.retained[f"aqara/{PLUG}/availability"] == "online"
    assert json.loads(rig.mqtt.retained[f"aqara/{PLUG}"])["1"]["Output"]["OnOff"] is True
    added = rig.mqtt.events()[-1]
    assert added == {
        "type": "device_added",
        "device": {"id": PLUG, "friendly_name": PLUG, "name": "Kitchen Plug", "backend": "home"},
    }
    assert [d["id"] for d in json.loads(rig.mqtt.retained["aqara/bridge/devices"])] == [LIGHT, PLUG]
    assert all(s.retain is False for s in rig.mqtt.on("aqara/bridge/event"))

    # an update that drops a trait and changes another value
    updated = make_device(PLUG, {1: {"Output": {"OnOff": (BOOL_RW, False)}}}, name="Kitchen Plug")
    rig.mqtt.clear()
    rig.event(DeviceUpdated(updated))
    assert rig.mqtt.events()[-1]["type"] == "device_updated"
    assert f"aqara/{PLUG}/1/EnergyManagement/CurrentPower" not in rig.mqtt.retained
    assert Sent(f"aqara/{PLUG}/1/EnergyManagement/CurrentPower", "", True) in rig.mqtt.sent
    assert rig.mqtt.retained[f"aqara/{PLUG}/1/Output/OnOff"] == "false"
    devices = json.loads(rig.mqtt.retained["aqara/bridge/devices"])
    plug_entry = next(d for d in devices if d["id"] == PLUG)
    assert [f["code"] for f in plug_entry["endpoints"][0]["functions"]] == ["Output"]

    # DeviceAdded for a known device is an update
    rig.event(DeviceAdded(updated))
    assert rig.mqtt.events()[-1]["type"] == "device_updated"

    rig.event(DeviceRenamed(PLUG, "Garden Plug"))
    renamed = rig.mqtt.events()[-1]
    assert renamed["type"] == "device_renamed"
    assert renamed["old_name"] == "Kitchen Plug"
    assert renamed["device"]["name"] == "Garden Plug"
    devices = json.loads(rig.mqtt.retained["aqara/bridge/devices"])
    assert next(d for d in devices if d["id"] == PLUG)["name"] == "Garden Plug"
    assert rig.mqtt.under(f"aqara/{PLUG}")  # the topic does not follow the hub's name

    await next_turn()
    rig.event(DeviceRemoved(PLUG))
    await next_turn()
    assert rig.mqtt.under(f"aqara/{PLUG}") == {}
    removed = rig.mqtt.events()[-1]
    assert removed["type"] == "device_removed"
    assert removed["device"]["id"] == PLUG
    assert [d["id"] for d in json.loads(rig.mqtt.retained["aqara/bridge/devices"])] == [LIGHT]
    assert rig.mqtt.under(f"aqara/{LIGHT}")  # the other device is untouched
    # events for the removed device are ignored from now on
    rig.mqtt.clear()
    rig.event(TraitChanged(addr(PLUG, 1, "Output", "OnOff"), True))
    await next_turn()
    assert rig.mqtt.sent == []


async def test_removal_clears_every_topic_ever_published_for_the_device() -> None:
    rig = make_rig(friendly_names={LIGHT: "dining_light"})
    rig.snapshot(light())
    rig.event(TraitChanged(addr(LIGHT, 1, "Output", "OnOff"), False))
    await next_turn()
    published = {s.topic for s in rig.mqtt.sent if s.topic.startswith("aqara/dining_light")}
    assert len(published) == len(LIGHT_PAYLOADS) + 2  # traits, availability, document
    # an update removes a function, then the device goes away
    smaller = light()
    del smaller.endpoints[1].functions["Effects"]
    rig.event(DeviceUpdated(smaller))
    await next_turn()
    rig.mqtt.clear()
    rig.event(DeviceRemoved(LIGHT))
    await next_turn()
    assert rig.mqtt.under("aqara/dining_light") == {}
    cleared = {s.topic for s in rig.mqtt.sent if s.payload == ""}
    assert all(s.retain for s in rig.mqtt.sent if s.payload == "")
    # every topic still retained before the removal is cleared by it
    assert cleared >= published - {
        f"aqara/dining_light/1/Effects/{t}" for t in ("Effect", "Config", "Label")
    }


async def test_update_dropping_a_trait_refreshes_the_device_document() -> None:
    rig = make_rig()
    rig.snapshot(plug())
    await next_turn()
    rig.event(DeviceUpdated(make_device(PLUG, {1: {"Output": {"OnOff": (BOOL_RW, False)}}})))
    await next_turn()
    assert json.loads(rig.mqtt.retained[f"aqara/{PLUG}"]) == {"1": {"Output": {"OnOff": False}}}


async def test_a_device_removed_in_the_same_turn_gets_no_document() -> None:
    rig = make_rig()
    rig.snapshot(light())
    rig.event(TraitChanged(addr(LIGHT, 1, "Output", "OnOff"), False))
    rig.event(DeviceRemoved(LIGHT))
    await next_turn()
    assert rig.mqtt.under(f"aqara/{LIGHT}") == {}
    assert rig.mqtt.on(f"aqara/{LIGHT}") == [Sent(f"aqara/{LIGHT}", "", True)]


async def test_second_snapshot_reconciles() -> None:
    rig = make_rig()
    rig.snapshot(light(), plug())
    await next_turn()
    rig.mqtt.clear()
    rig.snapshot(light(on=False))  # the plug is gone, the light changed while we were away
    await next_turn()
    assert rig.mqtt.under(f"aqara/{PLUG}") == {}
    assert [e["type"] for e in rig.mqtt.events()] == ["device_removed"]
    assert rig.mqtt.retained[f"aqara/{LIGHT}/1/Output/OnOff"] == "false"
    # unchanged values are not republished
    assert rig.mqtt.on(f"aqara/{LIGHT}/1/LevelControl/CurrentLevel") == []
    assert json.loads(rig.mqtt.retained[f"aqara/{LIGHT}"])["1"]["Output"]["OnOff"] is False
    assert [d["id"] for d in json.loads(rig.mqtt.retained["aqara/bridge/devices"])] == [LIGHT]
    assert set(rig.bridge.devices) == {LIGHT}


async def test_a_snapshot_only_reconciles_its_own_backend() -> None:
    other = FakeBackend("attic")
    rig = make_rig([FakeBackend("home"), other])
    rig.snapshot(light())
    rig.snapshot(plug(backend="attic"), backend=other)
    rig.snapshot(light())
    assert set(rig.bridge.devices) == {LIGHT, PLUG}
    rig.snapshot(backend=other)
    assert set(rig.bridge.devices) == {LIGHT}
    assert rig.mqtt.under(f"aqara/{PLUG}") == {}


async def test_excluded_devices_are_invisible() -> None:
    rig = make_rig(excluded=frozenset({PLUG}))
    rig.snapshot(light(), plug())
    rig.event(DeviceAdded(plug()))
    rig.event(DeviceUpdated(plug()))
    rig.event(TraitChanged(addr(PLUG, 1, "Output", "OnOff"), True))
    rig.event(Availability(PLUG, False))
    await next_turn()
    assert [s for s in rig.mqtt.sent if PLUG in s.topic or PLUG in s.payload] == []
    assert set(rig.bridge.devices) == {LIGHT}
    rig.send(f"aqara/{PLUG}/1/Output/OnOff/set", "ON")
    assert "unknown device" in rig.mqtt.logs()[-1]["message"]
    await rig.settle()
    assert rig.backend.writes == []


# ---- names and topic collisions ---------------------------------------------------------------


async def test_friendly_name_and_device_id_both_address_the_device() -> None:
    rig = make_rig(friendly_names={LIGHT: "Dining Light"})
    rig.snapshot(light())
    assert rig.mqtt.retained["aqara/Dining Light/1/Output/OnOff"] == "true"
    assert rig.mqtt.under(f"aqara/{LIGHT}") == {}
    rig.send("aqara/Dining Light/1/Output/OnOff/set", "OFF")
    rig.send(f"aqara/{LIGHT}/1/LevelControl/CurrentLevel/set", "10")
    await rig.settle()
    assert rig.backend.writes == [  # the first at once, the second gathered in the window
        [WriteItem(addr(LIGHT, 1, "Output", "OnOff"), False)],
        [WriteItem(addr(LIGHT, 1, "LevelControl", "CurrentLevel"), 10)],
    ]


async def test_names_that_sanitise_alike_get_distinct_topics() -> None:
    first, second = "lumi.aaa", "lumi.bbb"
    rig = make_rig(friendly_names={first: "Hall+Lamp", second: "Hall#Lamp"})
    rig.snapshot(plug(first, on=True), plug(second, on=False))
    listing = json.loads(rig.mqtt.retained["aqara/bridge/devices"])
    topics = {d["id"]: d["topic"] for d in listing}
    assert topics == {first: "aqara/Hall_Lamp", second: f"aqara/{second}"}
    assert rig.mqtt.retained["aqara/Hall_Lamp/1/Output/OnOff"] == "true"
    assert rig.mqtt.retained[f"aqara/{second}/1/Output/OnOff"] == "false"
    rig.send("aqara/Hall_Lamp/1/Output/OnOff/set", "OFF")
    rig.send(f"aqara/{second}/1/Output/OnOff/set", "ON")
    await rig.settle()
    assert rig.backend.writes == [
        [WriteItem(addr(first, 1, "Output", "OnOff"), False)],
        [WriteItem(addr(second, 1, "Output", "OnOff"), True)],
    ]
    # removing one leaves the other's topics alone
    rig.event(DeviceRemoved(second))
    assert rig.mqtt.retained["aqara/Hall_Lamp/1/Output/OnOff"] == "true"


COLLISIONS = [
    pytest.param({}, ("dev+1", "dev#1"), id="ids-sanitise-alike"),
    pytest.param({LIGHT: PLUG}, (LIGHT, PLUG), id="friendly-name-is-another-id"),
    pytest.param({PLUG: "bridge"}, (PLUG, "bridge"), id="friendly-bridge-and-id-bridge"),
]


@pytest.mark.parametrize(("names", "ids"), COLLISIONS)
async def test_every_device_gets_its_own_topic_level(
    names: dict[str, str], ids: tuple[str, str]
) -> None:
    rig = make_rig(friendly_names=names)
    rig.snapshot(plug(ids[0], on=True), plug(ids[1], on=False))
    topics = [d["topic"] for d in json.loads(rig.mqtt.retained["aqara/bridge/devices"])]
    assert len(set(topics)) == 2, topics
    for device_id, topic, value in zip(ids, topics, ("true", "false"), strict=True):
        assert rig.mqtt.retained[f"{topic}/1/Output/OnOff"] == value
        rig.send(f"{topic}/1/Output/OnOff/set", "toggle")
        await rig.settle()
        assert rig.backend.writes[-1][0].address.device_id == device_id


@pytest.mark.parametrize(
    ("names", "device_id"),
    [({PLUG: "bridge"}, PLUG), ({}, "bridge")],
    ids=["friendly-name", "device-id"],
)
async def test_a_device_called_bridge_does_not_touch_the_bridge_topics(
    names: dict[str, str], device_id: str
) -> None:
    rig = make_rig(friendly_names=names)
    rig.snapshot(plug(device_id, on=True), light())
    rig.bridge.on_mqtt_connected()
    await next_turn()
    own = {"state", "info", "devices"}
    assert {t.split("/")[2] for t in rig.mqtt.retained if t.startswith("aqara/bridge/")} == own
    topics = {d["id"]: d["topic"] for d in json.loads(rig.mqtt.retained["aqara/bridge/devices"])}
    assert topics[device_id] == "aqara/bridge_"
    assert rig.mqtt.retained["aqara/bridge_/1/Output/OnOff"] == "true"
    assert "aqara/bridge" not in rig.mqtt.retained
    assert "aqara/bridge/availability" not in rig.mqtt.retained
    rig.send("aqara/bridge_/1/Output/OnOff/set", "OFF")
    await rig.settle()
    assert rig.backend.writes == [[WriteItem(addr(device_id, 1, "Output", "OnOff"), False)]]
    rig.event(DeviceRemoved(device_id))
    assert rig.mqtt.under("aqara/bridge_") == {}
    assert rig.mqtt.retained["aqara/bridge/state"] == "online"


async def test_unsafe_characters_never_reach_a_topic() -> None:
    rig = make_rig(friendly_names={PLUG: " a/b+c#d\x00e "})
    weird = make_device("lumi.w", {1: {"Out/put": {"On+Off#": (BOOL_RO, True)}}})
    rig.snapshot(plug(), weird)
    await next_turn()
    for sent in rig.mqtt.sent:
        levels = sent.topic.split("/")
        assert levels[0] == "aqara"
        for level in levels[1:]:
            assert level, sent.topic
            assert not set(level) & {"+", "#", "\x00"}, sent.topic
    assert rig.mqtt.retained["aqara/a_b_c_d_e/1/Output/OnOff"] == "false"
    assert rig.mqtt.retained["aqara/lumi.w/1/Out_put/On_Off_"] == "true"


# ---- /set ---------------------------------------------------------------------------------------

T = f"aqara/{LIGHT}/1"
SET_CASES: list[tuple[str, str, Any]] = [
    (f"{T}/Output/OnOff", "OFF", False),
    (f"{T}/Output/OnOff", "ON", True),
    (f"{T}/Output/OnOff", "off", False),
    (f"{T}/Output/OnOff", "on", True),
    (f"{T}/Output/OnOff", "0", False),
    (f"{T}/Output/OnOff", "1", True),
    (f"{T}/Output/OnOff", "false", False),
    (f"{T}/Output/OnOff", "true", True),
    (f"{T}/Output/OnOff", '{"value": false}', False),
    (f"{T}/Output/OnOff", "toggle", False),  # the light is on
    (f"{T}/LevelControl/CurrentLevel", "30", 30),
    (f"{T}/LevelControl/CurrentLevel", "30.0", 30),
    (f"{T}/LevelControl/CurrentLevel", '{"value": 0}', 0),
    (f"{T}/LevelControl/CurrentLevel", "100", 100),
    (f"{T}/ColorControl/ColorTemperature", "250.5", 250.5),
    (f"{T}/ColorControl/ColorTemperature", "400", 400.0),
    (f"{T}/Effects/Effect", "Rainbow", "1"),
    (f"{T}/Effects/Effect", "candle", "2"),
    (f"{T}/Effects/Effect", "0", "0"),
    (f"{T}/Effects/Effect", '"Off"', "0"),
    (f"{T}/Effects/Config", '{"a": {"b": 1}}', {"a": {"b": 1}}),
    (f"{T}/Effects/Config", "[1, 2]", [1, 2]),
    (f"{T}/Effects/Label", "hi there", "hi there"),
    (f"{T}/Effects/Secret", "1234", "1234"),  # write-only traits can be written
]


@pytest.mark.parametrize(("topic", "payload", "value"), SET_CASES)
async def test_set_is_parsed_per_type(topic: str, payload: str, value: Any) -> None:
    rig = make_rig()
    rig.snapshot(light())
    rig.send(f"{topic}/set", payload)
    await rig.settle()
    ep, fn, tr = topic.split("/")[2:]
    (batch,) = rig.backend.writes
    (item,) = batch
    assert item.address == addr(LIGHT, int(ep), fn, tr)
    assert item.value == value
    assert type(item.value) is type(value)
    assert rig.mqtt.logs() == []


async def test_toggle_uses_the_current_hub_value() -> None:
    rig = make_rig()
    rig.snapshot(light(on=False))
    rig.send(f"{T}/Output/OnOff/set", "toggle")
    await rig.settle()
    assert rig.backend.writes[-1][0].value is True


async def test_state_is_never_published_optimistically() -> None:
    rig = make_rig()
    rig.snapshot(light())
    await next_turn()
    rig.mqtt.clear()
    rig.send(f"{T}/Output/OnOff/set", "OFF", response_topic="r/1")
    await rig.settle()
    assert rig.backend.writes
    assert [s.topic for s in rig.mqtt.sent] == ["r/1"]
    assert rig.mqtt.retained[f"{T}/Output/OnOff"] == "true"
    rig.event(TraitChanged(addr(LIGHT, 1, "Output", "OnOff"), False))  # the hub reports it
    assert rig.mqtt.retained[f"{T}/Output/OnOff"] == "false"


REJECTIONS: list[tuple[str, str | bytes, str]] = [
    ("aqara/nodev/1/Output/OnOff/set", "ON", "unknown device 'nodev'"),
    ("aqara/nodev/set", '{"1": {"Output": {"OnOff": true}}}', "unknown device 'nodev'"),
    (f"{T}/Output/Nope/set", "ON", "has no trait 1.Output.Nope"),
    (f"aqara/{LIGHT}/7/Output/OnOff/set", "ON", "has no trait 7.Output.OnOff"),
    (f"aqara/{LIGHT}/0/BasicInformation/FirmwareRevision/set", "2.0", "read-only"),
    (f"{T}/Output/OnOff/set", "banana", "not a boolean"),
    (f"{T}/Output/OnOff/set", "2", "not a boolean"),
    (f"{T}/Output/OnOff/set", " ", "empty payload"),
    (f"{T}/Output/OnOff/set", b"\xff\xfe", "not valid UTF-8"),
    (f"{T}/LevelControl/CurrentLevel/set", "101", "above the maximum 100"),
    (f"{T}/LevelControl/CurrentLevel/set", "-1", "below the minimum 0"),
    (f"{T}/LevelControl/CurrentLevel/set", "12.5", "not a whole number"),
    (f"{T}/LevelControl/CurrentLevel/set", "ten", "not a number"),
    (f"{T}/LevelControl/CurrentLevel/set", "true", "not a number"),
    (f"{T}/LevelControl/CurrentLevel/set", "NaN", "not a number"),
    (f"{T}/ColorControl/ColorTemperature/set", "100", "below the minimum 153"),
    (f"{T}/Effects/Effect/set", "Disco", "not one of Off (0), Rainbow (1), Candle (2)"),
    (f"{T}/Effects/Config/set", "42", "not a JSON object or array"),
    (f"{T}/Effects/Unknown/set", '{"value": [1]}', "not a string"),
    (f"aqara/{LIGHT}/x/Output/OnOff/set", "ON", "endpoint id 'x' is not an integer"),
    (f"aqara/{LIGHT}/set", "not json", "not JSON"),
    (f"aqara/{LIGHT}/set", "[1, 2]", "must be a JSON object"),
    (f"aqara/{LIGHT}/set", "{}", "names no traits"),
    (f"aqara/{LIGHT}/set", '{"one": {"Output": {"OnOff": true}}}', "is not an integer"),
    (f"aqara/{LIGHT}/set", '{"1": {"Output": true}}', "must be an object of trait codes"),
    (f"aqara/{LIGHT}/set", '{"1": {"Output": {"OnOff": true}}, '
     '"0": {"BasicInformation": {"FirmwareRevision": "9"}}}', "read-only"),
    (f"aqara/{LIGHT}/1/Output/Nope/get", "", "has no trait 1.Output.Nope"),
]


@pytest.mark.parametrize(("topic", "payload", "reason"), REJECTIONS)
async def test_rejections_go_to_the_log_with_topic_and_payload(
    topic: str, payload: str | bytes, reason: str
) -> None:
    rig = make_rig()
    rig.snapshot(light())
    await next_turn()
    rig.mqtt.clear()
    rig.send(topic, payload)
    await rig.settle()
    assert rig.backend.writes == []
    assert rig.backend.reads == []
    (entry,) = rig.mqtt.logs()
    assert entry["level"] == "warning"
    assert entry["message"].startswith("rejected: ")
    assert reason in entry["message"], entry
    assert entry["topic"] == topic
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    assert entry["payload"] == text
    assert rig.mqtt.on("aqara/bridge/log")[0].retain is False
    # nothing else: no retained state changes because of a bad command
    assert [s.topic for s in rig.mqtt.sent] == ["aqara/bridge/log"]


async def test_clearing_a_retained_set_is_not_a_command() -> None:
    rig = make_rig()
    rig.snapshot(light())
    await next_turn()
    rig.mqtt.clear()
    rig.send(f"{T}/Output/OnOff/set", "")  # mosquitto_pub -r -n: deletes a retained /set
    rig.send(f"aqara/{LIGHT}/set", "")
    await rig.settle()
    assert rig.mqtt.sent == []
    assert rig.backend.writes == []
    # with a response topic it is a live command and gets an answer
    rig.send(f"{T}/Output/OnOff/set", "", response_topic="me/answer")
    assert rig.mqtt.on("me/answer")
    assert "empty payload" in rig.mqtt.logs()[-1]["message"]


async def test_retained_command_is_ignored_then_cleared_once_backends_are_complete() -> None:
    rig = make_rig()
    rig.bridge.on_mqtt_connected()
    rig.send(f"{T}/Output/OnOff/set", "ON", retain=True)  # replayed by the broker
    assert "retained command ignored" in rig.mqtt.logs()[-1]["message"]
    assert not [s for s in rig.mqtt.sent if s.topic == f"{T}/Output/OnOff/set"]
    assert not [s for s in rig.mqtt.sent if s.topic == f"{T}/Output/OnOff/set"]
    rig.snapshot(light())  # the only backend is complete: now the command is cleared
    assert [s.payload for s in rig.mqtt.sent if s.topic == f"{T}/Output/OnOff/set"] == [""]
    assert rig.backend.writes == []


async def test_a_retained_command_to_a_device_of_no_one_we_know_is_left_alone() -> None:
    """Another bridge's (or an older one's) command under the base topic is not ours."""
    rig = make_rig()
    rig.bridge.on_mqtt_connected()
    rig.snapshot(light())
    rig.send("aqara/someone_else/1/Output/OnOff/set", "ON", retain=True)
    assert "retained command ignored" in rig.mqtt.logs()[-1]["message"]
    assert not [s for s in rig.mqtt.sent if s.topic.startswith("aqara/someone_else/")]


async def test_writes_to_an_offline_device_or_a_disconnected_hub_are_rejected() -> None:
    rig = make_rig()
    rig.snapshot(light(), plug(online=False))
    rig.send(f"aqara/{PLUG}/1/Output/OnOff/set", "ON")
    assert f"device '{PLUG}' is offline" in rig.mqtt.logs()[-1]["message"]
    rig.backend.connected = False
    rig.event(BackendStatus(False, "gone"))
    rig.send(f"{T}/Output/OnOff/set", "ON")
    assert "is not connected" in rig.mqtt.logs()[-1]["message"]
    # the value is still checked first: a bad value is reported as such
    rig.send(f"{T}/Output/OnOff/set", "banana")
    assert "not a boolean" in rig.mqtt.logs()[-1]["message"]
    await rig.settle()
    assert rig.backend.writes == []


async def test_device_set_is_all_or_nothing() -> None:
    rig = make_rig()
    rig.snapshot(light())
    rig.send(
        f"aqara/{LIGHT}/set",
        json.dumps({"1": {"Output": {"OnOff": "OFF"}, "LevelControl": {"CurrentLevel": 900}}}),
    )
    rig.send(
        f"aqara/{LIGHT}/set", json.dumps({"1": {"Output": {"OnOff": "OFF"}, "Nope": {"X": 1}}})
    )
    await rig.settle()
    assert rig.backend.writes == []
    messages = [e["message"] for e in rig.mqtt.logs()]
    assert "above the maximum 100" in messages[0]
    assert "has no trait 1.Nope.X" in messages[1]

    rig.send(
        f"aqara/{LIGHT}/set",
        json.dumps(
            {
                "1": {
                    "Output": {"OnOff": "toggle"},
                    "LevelControl": {"CurrentLevel": {"value": 5}},
                    "Effects": {"Effect": "Rainbow"},
                },
                "0": {},
            }
        ),
    )
    await rig.settle()
    assert rig.backend.writes == [
        [
            WriteItem(addr(LIGHT, 1, "Output", "OnOff"), False),
            WriteItem(addr(LIGHT, 1, "LevelControl", "CurrentLevel"), 5),
            WriteItem(addr(LIGHT, 1, "Effects", "Effect"), "1"),
        ]
    ]


async def test_retained_commands_are_ignored() -> None:
    rig = make_rig()
    rig.snapshot(light())
    for topic, payload in [
        (f"{T}/Output/OnOff/set", "ON"),
        (f"aqara/{LIGHT}/set", '{"1": {"Output": {"OnOff": true}}}'),
        (f"{T}/Output/OnOff/get", ""),
        (f"aqara/{LIGHT}/get", ""),
    ]:
        rig.send(topic, payload, retain=True, response_topic="r/x", correlation=b"c")
        entry = rig.mqtt.logs()[-1]
        assert "retained command ignored" in entry["message"]
        assert entry["topic"] == topic
    await rig.settle()
    assert rig.backend.writes == []
    assert rig.backend.reads == []
    assert len(rig.mqtt.on("r/x")) == 4


async def test_topics_the_bridge_does_not_handle_are_ignored() -> None:
    rig = make_rig()
    rig.snapshot(light())
    await next_turn()
    rig.mqtt.clear()
    for topic in [
        "other/x/set",
        f"aqara/{LIGHT}",
        f"aqara/{LIGHT}/availability",
        "aqara/bridge/response/x",
        f"{T}/Output/OnOff",
        f"{T}/Output/OnOff/sett",
    ]:
        rig.send(topic, "ON")
    await rig.settle()
    assert rig.mqtt.sent == []
    assert rig.backend.writes == []


async def test_bridge_requests_go_to_the_request_handler() -> None:
    rig = make_rig()
    seen: list[tuple[str, IncomingMessage]] = []
    rig.bridge.request_handler = lambda command, message: seen.append((command, message))
    rig.send("aqara/bridge/request/device/rename", '{"id": 1}', response_topic="r")
    assert [c for c, _ in seen] == ["device/rename"]
    assert seen[0][1].payload == b'{"id": 1}'
    assert seen[0][1].response_topic == "r"
    rig.send("aqara/bridge/request", "x")
    assert "missing request command" in rig.mqtt.logs()[-1]["message"]


# ---- MQTT 5 responses ---------------------------------------------------------------------------


async def test_response_topic_and_correlation_data_on_success_and_error() -> None:
    rig = make_rig()
    rig.snapshot(light())
    rig.send(f"{T}/Output/OnOff/set", "OFF", response_topic="replies/ok", correlation=b"\x00c1")
    rig.send(
        f"{T}/LevelControl/CurrentLevel/set", "-3", response_topic="replies/bad", correlation=b"c2"
    )
    rig.send(f"{T}/Output/OnOff/set", "ON", response_topic="replies/nocorr")
    (bad,) = await rig.replies("replies/bad")
    assert bad.retain is False
    assert bad.json() == {
        "status": "error",
        "data": None,
        "error": {
            "code": "rejected",
            "message": "value -3 is below the minimum 0 for 1.LevelControl.CurrentLevel",
        },
    }
    assert bad.properties.correlation_data == b"c2"
    (ok,) = await rig.replies("replies/ok")
    assert ok.json() == {"status": "ok", "data": None}
    assert ok.properties.correlation_data == b"\x00c1"
    (nocorr,) = await rig.replies("replies/nocorr")
    assert nocorr.json()["status"] == "ok"
    assert nocorr.properties.correlation_data is None
    assert nocorr.properties.content_type == "application/json"
    assert len(rig.backend.writes) == 2  # the first write at once, the next one gathered


async def test_no_response_without_a_response_topic() -> None:
    rig = make_rig()
    rig.snapshot(light())
    await next_turn()
    rig.mqtt.clear()
    rig.send(f"{T}/Output/OnOff/set", "OFF", correlation=b"c")
    await rig.settle()
    assert rig.backend.writes
    assert rig.mqtt.sent == []


# ---- coalescing ---------------------------------------------------------------------------------


async def test_writes_in_a_window_are_coalesced_latest_wins_all_answered() -> None:
    rig = make_rig(write_window=0.05)
    rig.snapshot(light())
    rig.send(f"{T}/Output/OnOff/set", "ON", response_topic="r/first")
    # leading edge: the first write of a burst goes at once and opens the window
    assert rig.bridge.pending_writes() == 0
    await next_turn()
    assert rig.backend.writes == [[WriteItem(addr(LIGHT, 1, "Output", "OnOff"), True)]]
    for n, value in enumerate(["10", "20", "30"]):
        rig.send(
            f"{T}/LevelControl/CurrentLevel/set",
            value,
            response_topic=f"r/{n}",
            correlation=str(n).encode(),
        )
    rig.send(f"{T}/Output/OnOff/set", "OFF", response_topic="r/3", correlation=b"3")
    rig.send(f"{T}/LevelControl/CurrentLevel/set", "40", response_topic="r/4", correlation=b"4")
    assert rig.bridge.pending_writes() == 2  # the rest waits for the window to end
    await next_turn()
    assert len(rig.backend.writes) == 1
    await rig.backend.changed.wait_for(lambda: len(rig.backend.writes) == 2)
    for n in range(5):
        (reply,) = await rig.replies(f"r/{n}")
        assert reply.json()["status"] == "ok"
        assert reply.properties.correlation_data == str(n).encode()
    assert rig.backend.writes[1] == [
        WriteItem(addr(LIGHT, 1, "LevelControl", "CurrentLevel"), 40),
        WriteItem(addr(LIGHT, 1, "Output", "OnOff"), False),
    ]
    # once a window closed empty, the next write goes at once again
    await asyncio.sleep(0.2)
    assert len(rig.backend.writes) == 2
    rig.send(f"{T}/Output/OnOff/set", "ON")
    assert rig.bridge.pending_writes() == 0
    await next_turn()
    assert rig.backend.writes[2] == [WriteItem(addr(LIGHT, 1, "Output", "OnOff"), True)]


async def test_each_backend_has_its_own_batch() -> None:
    other = FakeBackend("attic")
    rig = make_rig([FakeBackend("home"), other], write_window=0.01)
    rig.snapshot(light())
    rig.snapshot(plug(backend="attic"), backend=other)
    rig.send(f"{T}/Output/OnOff/set", "OFF")
    rig.send(f"aqara/{PLUG}/1/Output/OnOff/set", "ON")
    await rig.backend.changed.wait_for(lambda: rig.backend.writes)
    await other.changed.wait_for(lambda: other.writes)
    assert rig.backend.writes == [[WriteItem(addr(LIGHT, 1, "Output", "OnOff"), False)]]
    assert other.writes == [[WriteItem(addr(PLUG, 1, "Output", "OnOff"), True)]]


async def test_drain_flushes_pending_writes_at_once() -> None:
    rig = make_rig(write_window=30.0)  # a window far longer than the test
    rig.snapshot(light())
    rig.send(f"{T}/Output/OnOff/set", "ON")  # the leading edge: sent at once, window opens
    rig.send(f"{T}/Output/OnOff/set", "OFF", response_topic="r/d")
    assert rig.bridge.pending_writes() == 1
    await asyncio.wait_for(rig.bridge.drain(), 5)
    assert rig.backend.writes[1] == [WriteItem(addr(LIGHT, 1, "Output", "OnOff"), False)]
    (reply,) = rig.mqtt.on("r/d")
    assert reply.json()["status"] == "ok"


# ---- hub failures -------------------------------------------------------------------------------


async def test_items_the_hub_refuses_are_reported() -> None:
    rig = make_rig()
    rig.snapshot(light())
    rig.backend.failures[addr(LIGHT, 1, "LevelControl", "CurrentLevel")] = (602, "device offline")
    document = {"1": {"Output": {"OnOff": False}, "LevelControl": {"CurrentLevel": 5}}}
    rig.send(f"aqara/{LIGHT}/set", json.dumps(document), response_topic="r/dev", correlation=b"d")
    rig.send(f"{T}/Output/OnOff/set", "OFF", response_topic="r/onoff")
    (reply,) = await rig.replies("r/dev")
    assert reply.json()["status"] == "error"
    assert reply.json()["error"] == {
        "code": "hub_error",
        "message": "the hub refused 1.LevelControl.CurrentLevel: device offline (code 602)",
    }
    assert reply.properties.correlation_data == b"d"
    (onoff,) = await rig.replies("r/onoff")
    assert onoff.json()["status"] == "ok"  # its item went through
    (entry,) = rig.mqtt.logs()
    assert entry["level"] == "error"
    assert entry["message"] == (
        "write failed: the hub refused 1.LevelControl.CurrentLevel: device offline (code 602)"
    )
    assert entry["topic"] == f"aqara/{LIGHT}/set"
    assert json.loads(entry["payload"]) == document


async def test_backend_error_fails_every_item_of_the_batch() -> None:
    rig = make_rig()
    rig.snapshot(light())
    rig.backend.write_error = BackendError("the hub connection closed")
    rig.send(f"{T}/Output/OnOff/set", "OFF", response_topic="r/a")
    rig.send(f"{T}/LevelControl/CurrentLevel/set", "3", response_topic="r/b")
    for topic in ("r/a", "r/b"):
        (reply,) = await rig.replies(topic)
        assert reply.json()["error"]["code"] == "hub_error"
        assert "the hub connection closed" in reply.json()["error"]["message"]
    logs = rig.mqtt.logs()
    assert [e["level"] for e in logs] == ["error", "error"]
    assert {e["topic"] for e in logs} == {
        f"{T}/Output/OnOff/set",
        f"{T}/LevelControl/CurrentLevel/set",
    }
    assert len(rig.backend.writes) == 2


async def test_unexpected_backend_exception_is_reported() -> None:
    rig = make_rig()
    rig.snapshot(light())
    rig.backend.write_error = RuntimeError("backend bug")
    rig.send(f"{T}/Output/OnOff/set", "OFF", response_topic="r/a")
    await rig.settle()
    assert rig.mqtt.on("r/a"), "no answer on the response topic"
    assert rig.mqtt.logs()[-1]["level"] == "error"


async def test_unexpected_read_exception_is_reported() -> None:
    rig = make_rig()
    rig.snapshot(light())
    rig.backend.read_error = KeyError("backend bug")
    rig.send(f"{T}/Output/OnOff/get", "", response_topic="r/g")
    await rig.settle()
    assert rig.mqtt.on("r/g"), "no answer on the response topic"
    assert rig.mqtt.logs()[-1]["level"] == "error"


# ---- /get ---------------------------------------------------------------------------------------


async def test_trait_get_rereads_and_republishes_even_if_unchanged() -> None:
    rig = make_rig()
    rig.snapshot(light())
    await next_turn()
    rig.mqtt.clear()
    onoff = addr(LIGHT, 1, "Output", "OnOff")
    rig.backend.values[onoff] = True  # the same as before
    rig.send(f"{T}/Output/OnOff/get", "", response_topic="r/get", correlation=b"g")
    (reply,) = await rig.replies("r/get")
    assert reply.json() == {"status": "ok", "data": None}
    assert reply.properties.correlation_data == b"g"
    assert rig.backend.reads == [[onoff]]
    assert [s.payload for s in rig.mqtt.on(f"{T}/Output/OnOff")] == ["true"]
    rig.backend.values[onoff] = False
    rig.send(f"{T}/Output/OnOff/get", "anything")
    await rig.settle()
    assert rig.mqtt.retained[f"{T}/Output/OnOff"] == "false"
    assert json.loads(rig.mqtt.retained[f"aqara/{LIGHT}"])["1"]["Output"]["OnOff"] is False


async def test_device_get_rereads_every_readable_trait() -> None:
    rig = make_rig(friendly_names={LIGHT: "dining"})
    rig.snapshot(light())
    await next_turn()
    rig.mqtt.clear()
    device = light()
    for address, trait in device.iter_traits():
        rig.backend.values[address] = trait.value
    rig.backend.values[addr(LIGHT, 1, "LevelControl", "CurrentLevel")] = 77
    rig.send("aqara/dining/get", "")
    await rig.settle()
    (read,) = rig.backend.reads
    assert set(read) == {a for a, t in device.iter_traits() if t.spec.readable}
    republished = {
        s.topic.removeprefix("aqara/dining/"): s.payload
        for s in rig.mqtt.sent
        if s.topic.count("/") == 4
    }
    assert republished == {**LIGHT_PAYLOADS, "1/LevelControl/CurrentLevel": "77"}


async def test_get_failure_is_reported() -> None:
    rig = make_rig()
    rig.snapshot(light())
    rig.backend.read_error = BackendError("the hub did not answer", 408)
    rig.send(f"{T}/Output/OnOff/get", "", response_topic="r/get")
    (reply,) = await rig.replies("r/get")
    assert reply.json()["status"] == "error"
    assert reply.json()["error"] == {"code": "hub_error", "message": "the hub did not answer"}
    entry = rig.mqtt.logs()[-1]
    assert entry["level"] == "error"
    assert "re-read failed: the hub did not answer" in entry["message"]
    assert entry["topic"] == f"{T}/Output/OnOff/get"


async def test_get_result_for_a_device_removed_meanwhile_is_dropped() -> None:
    rig = make_rig()
    rig.snapshot(light())
    onoff = addr(LIGHT, 1, "Output", "OnOff")
    rig.backend.values[onoff] = False
    rig.send(f"{T}/Output/OnOff/get", "")
    rig.event(DeviceRemoved(LIGHT))  # before the read task runs
    await rig.settle()
    assert rig.mqtt.under(f"aqara/{LIGHT}") == {}


# ---- reconnect ----------------------------------------------------------------------------------


async def test_on_mqtt_connected_republishes_everything() -> None:
    rig = make_rig(friendly_names={LIGHT: "dining"})
    rig.snapshot(light(), plug(online=False))
    rig.bridge.on_mqtt_connected()
    await next_turn()
    before = dict(rig.mqtt.retained)
    assert before["aqara/bridge/state"] == "online"
    rig.mqtt.clear()
    rig.mqtt.retained.clear()  # a broker restarted without persistence
    rig.bridge.on_mqtt_connected()
    await next_turn()
    assert rig.mqtt.retained == before
    # everything but the stale-topic sweeper's learning marker is retained
    assert all(s.retain for s in rig.mqtt.sent if "/stale_sync/" not in s.topic)
    # availability is forced out again even though it did not change
    assert [s.payload for s in rig.mqtt.on(f"aqara/{PLUG}/availability")] == ["offline"]
    assert len(rig.mqtt.on("aqara/dining")) == 1
