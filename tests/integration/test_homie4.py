"""Homie 4 through a real Mosquitto, read by a controller that follows openHAB's Homie binding.

The witness is written from openHAB's source (openhab-addons, the Homie binding: discovery
``Homie300Discovery``, ``DeviceAttributes``, ``NodeAttributes``, ``PropertyAttributes``,
``Property.createChannelFromAttribute``), not from the bridge: it imports nothing of
``bridge.outputs``. What openHAB does with a device is what it checks:

- discovery on ``+/+/$homie``, a payload starting with ``3`` or ``4``; the device id is the second
  topic level, the base topic the first;
- mandatory device attributes ``$homie``, ``$name``, ``$state`` (one of openHAB's ready states),
  ``$nodes``; mandatory node attributes ``$name``, ``$properties``;
- a property's ``$datatype`` one of openHAB's (``integer``, ``float``, ``boolean``, ``string``,
  ``enum``, ``color``, ``datetime``), ``$settable``/``$retained`` ``true``/``false``; a number's
  range only from a ``$format`` of exactly two parts; an enum's values from its ``$format``;
- a channel per property: state topic = the property topic, command topic = ``…/set``
  (non-retained) when settable, a trigger channel when not retained;
- states parsed as openHAB's values do: ``true``/``false`` (OnOffValue), numbers (BigDecimal)
  within the range, an enum value among the listed ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from bridge.app import Daemon
from bridge.simulators.studio import StudioSimulator
from tests.integration.conftest import PLUG, bridge_config, running
from tests.integration.test_events import REMOTE
from tests.mosquitto import Mosquitto
from tests.mqtt_probe import MqttProbe

pytestmark = pytest.mark.integration

READY_STATES = {"init", "ready", "disconnected", "sleeping", "lost", "alert"}
DATATYPES = {"integer", "float", "boolean", "string", "enum", "color", "datetime"}
THING_STATUS = {"ready": "ONLINE", "init": "ONLINE", "alert": "ONLINE", "sleeping": "ONLINE",
                "disconnected": "OFFLINE", "lost": "OFFLINE"}


@dataclass
class Channel:
    """What openHAB builds for one Homie property."""

    state_topic: str
    datatype: str
    trigger: bool
    command_topic: str | None
    minimum: float | None = None
    maximum: float | None = None
    options: list[str] = field(default_factory=list)
    unit: str = ""

    def check_state(self, payload: str) -> None:
        """Raise ValueError when openHAB's value for this channel would refuse ``payload``."""
        if self.datatype == "boolean" and payload not in ("true", "false"):
            raise ValueError(f"{self.state_topic}: {payload!r} is not true/false")
        if self.datatype in ("integer", "float"):
            number = float(payload)
            if not math.isfinite(number) or (self.datatype == "integer" and "." in payload):
                raise ValueError(f"{self.state_topic}: {payload!r}")
            if self.minimum is not None and number < self.minimum:
                raise ValueError(f"{self.state_topic}: {payload} < {self.minimum}")
            if self.maximum is not None and number > self.maximum:
                raise ValueError(f"{self.state_topic}: {payload} > {self.maximum}")
        if self.datatype == "enum" and payload not in self.options:
            raise ValueError(f"{self.state_topic}: {payload!r} not in {self.options}")


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _channel(topic: str, attrs: dict[str, str]) -> Channel:
    datatype = attrs.get("$datatype", "")
    if datatype not in DATATYPES:
        raise ValueError(f"{topic}: datatype {datatype!r} is unknown to openHAB")
    flags = {name: attrs.get(f"${name}", default) for name, default in
             (("settable", "false"), ("retained", "true"))}
    if any(value not in ("true", "false") for value in flags.values()):
        raise ValueError(f"{topic}: settable/retained {flags}")
    fmt = attrs.get("$format", "")
    channel = Channel(topic, datatype, flags["retained"] == "false",
                      f"{topic}/set" if flags["settable"] == "true" else None,
                      unit=attrs.get("$unit", ""))
    if datatype in ("integer", "float"):
        parts = fmt.split(":") if fmt else []
        while parts and parts[-1] == "":  # Java's split drops trailing empty strings
            parts.pop()
        if len(parts) == 2:
            channel.minimum, channel.maximum = _number(parts[0]), _number(parts[1])
    elif datatype == "enum":
        channel.options = fmt.split(",")
        if not fmt:
            raise ValueError(f"{topic}: an enum without values")
    return channel


def _require(attributes: dict[str, str], *topics: str) -> None:
    """openHAB waits for mandatory attributes: KeyError while one has not arrived."""
    for topic in topics:
        if topic not in attributes:
            raise KeyError(topic)


def parse_thing(last: dict[str, str], base: str, device_id: str) -> dict[str, Channel]:
    """The channels (``<node>#<property>``) of a discovered device, as openHAB builds them;
    KeyError while a mandatory attribute is missing, ValueError when one is invalid."""
    device = f"{base}/{device_id}"
    _require(last, *(f"{device}/{a}" for a in ("$homie", "$name", "$state", "$nodes")))
    if last[f"{device}/$state"] not in READY_STATES:
        raise ValueError(f"{device}: state {last[f'{device}/$state']!r}")
    channels: dict[str, Channel] = {}
    for node in last[f"{device}/$nodes"].split(","):
        node_topic = f"{device}/{node}"
        _require(last, f"{node_topic}/$name", f"{node_topic}/$properties")
        for prop in last[f"{node_topic}/$properties"].split(","):
            topic = f"{node_topic}/{prop}"
            attrs = {key.removeprefix(topic + "/"): value for key, value in last.items()
                     if key.startswith(topic + "/$")}
            _require(attrs, "$name", "$datatype")
            channels[f"{node}#{prop}"] = _channel(topic, attrs)
    return channels


class OpenHabHomie4:
    """Discovers Homie 3/4 devices and reads them as openHAB's Homie binding does."""

    def __init__(self, probe: MqttProbe) -> None:
        self.probe = probe

    def _last(self) -> dict[str, str]:
        return {topic: item.text for topic, item in self.probe.last.items() if item.payload}

    def discovered(self) -> dict[str, str]:
        """Device id → base topic, for every ``$homie`` openHAB would accept."""
        return {topic.split("/")[1]: topic.split("/")[0]
                for topic, payload in self._last().items()
                if topic.count("/") == 2 and topic.endswith("/$homie") and payload[:1] in "34"}

    async def thing(self, device_id: str) -> dict[str, Channel]:
        """The device's channels once every mandatory attribute has arrived."""

        def attempt() -> dict[str, Channel] | None:
            base = self.discovered().get(device_id)
            if base is None:
                return None
            try:
                return parse_thing(self._last(), base, device_id)
            except KeyError:
                return None

        result: dict[str, Channel] = await self.probe.wait_for(attempt)
        return result

    def status(self, base: str, device_id: str) -> str:
        return THING_STATUS.get(self._last().get(f"{base}/{device_id}/$state", ""), "UNKNOWN")

    async def command(self, channel: Channel, payload: str) -> None:
        """What openHAB sends for a command: the command topic, not retained."""
        assert channel.command_topic is not None, f"{channel.state_topic} is read-only"
        await self.probe.publish(channel.command_topic, payload)


HOMIE4 = "homie: {enabled: true, versions: [4]}"


async def test_openhab_discovers_reads_and_commands_every_device(
        mosquitto: Mosquitto, hub: StudioSimulator) -> None:
    probe = await MqttProbe(mosquitto.port, ["+/+/$homie", "homie/#"]).start()
    openhab = OpenHabHomie4(probe)
    try:
        async with running(Daemon(bridge_config(mosquitto, hub, extra=HOMIE4))) as daemon:
            await probe.wait_for(
                lambda: daemon.bridge.devices and set(openhab.discovered()) == {
                    device_id.replace(".", "-") for device_id in daemon.bridge.devices})
            assert set(openhab.discovered().values()) == {"homie"}
            assert not [t for t in probe.last if t.startswith("homie/5/")]  # 4 only, as asked
            for device_id in openhab.discovered():
                channels = await openhab.thing(device_id)
                assert channels
                for channel in channels.values():
                    value = probe.last.get(channel.state_topic)
                    if value is not None and not channel.trigger:
                        channel.check_state(value.text)
                await probe.value(f"homie/{device_id}/$state", "ready")
                assert openhab.status("homie", device_id) == "ONLINE"

            plug_id = PLUG.replace(".", "-")
            channels = await openhab.thing(plug_id)
            on_off = channels["ep1-output#on-off"]
            assert on_off.datatype == "boolean"
            assert on_off.command_topic == "homie/lumi-158d0002c660dc/ep1-output/on-off/set"
            power = channels["ep1-energy-management#current-power"]
            assert (power.datatype, power.unit, power.command_topic) == ("float", "W", None)
            hub.set_value(PLUG, 1, "EnergyManagement", "CurrentPower", 42.5)
            assert await probe.value(power.state_topic, "42.5")

            await openhab.command(on_off, "true")
            assert await probe.value(on_off.state_topic, "true")
            assert hub.get_value(PLUG, 1, "Output", "OnOff") is True
            await openhab.command(on_off, "false")
            assert await probe.value(on_off.state_topic, "false")
            assert hub.get_value(PLUG, 1, "Output", "OnOff") is False
        await probe.value(f"homie/{plug_id}/$state", "disconnected")
        assert openhab.status("homie", plug_id) == "OFFLINE"
    finally:
        probe.stop()


async def test_openhab_gets_a_press_on_a_trigger_channel(
        mosquitto: Mosquitto, studio: StudioSimulator) -> None:
    probe = await MqttProbe(mosquitto.port, ["+/+/$homie", "homie/#"]).start()
    openhab = OpenHabHomie4(probe)
    remote = REMOTE.replace(".", "-")
    try:
        async with running(Daemon(bridge_config(mosquitto, studio, extra=HOMIE4))):
            channels = await openhab.thing(remote)
            button = channels["events#button-2"]
            assert button.trigger
            assert button.command_topic is None
            assert "double" in button.options
            await probe.value(f"homie/{remote}/$state", "ready")
            start = len(probe.messages)
            studio.press(REMOTE, 2, "double")
            press = await probe.next_on(button.state_topic, start)
            assert (press.text, press.retain) == ("double", False)
            button.check_state(press.text)
    finally:
        probe.stop()


async def test_both_versions_side_by_side_and_a_removal(
        mosquitto: Mosquitto, hub: StudioSimulator) -> None:
    probe = await MqttProbe(mosquitto.port, ["+/+/$homie", "homie/#"]).start()
    openhab = OpenHabHomie4(probe)
    plug_id = PLUG.replace(".", "-")
    try:
        config = bridge_config(mosquitto, hub, extra="homie: {enabled: true, versions: [5, 4]}")
        async with running(Daemon(config)):
            await openhab.thing(plug_id)
            await probe.value(f"homie/5/{plug_id}/$state", "ready")
            assert "homie/5/$homie" not in probe.last  # Homie 5 topics are not a Homie 4 device
            hub.remove_device(PLUG)
            await probe.value(f"homie/{plug_id}/$homie", "")
            await probe.wait_for(lambda: plug_id not in openhab.discovered())
            assert await probe.value(f"homie/{plug_id}/ep1-output/on-off", "") == ""
            assert await probe.value(f"homie/5/{plug_id}/$state", "") == ""
    finally:
        probe.stop()
