"""A real MQTT client for tests: records everything it receives and lets tests await conditions."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    correlation_data: bytes | None = None
    content_type: str | None = None

    @property
    def text(self) -> str:
        return self.payload.decode()

    def json(self) -> Any:
        return json.loads(self.payload)


class MqttProbe:
    """Subscribes to ``filters`` on a broker; paho runs its own thread, results land on the loop."""

    def __init__(self, port: int, filters: list[str],
                 protocol: MQTTProtocolVersion = paho.MQTTv5) -> None:
        self.port = port
        self.filters = filters
        self.protocol = protocol
        self.messages: list[Received] = []
        self.last: dict[str, Received] = {}
        self._changed = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: self._subscribed.set()

    async def start(self) -> MqttProbe:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        await asyncio.to_thread(self._subscribed.wait, 10)
        assert self._subscribed.is_set(), "probe did not get its SUBACK"
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: paho.Client, *_args: Any) -> None:
        client.subscribe([(f, 1) for f in self.filters])

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        corr = getattr(props, "CorrelationData", None) if props is not None else None
        content_type = getattr(props, "ContentType", None) if props is not None else None
        item = Received(msg.topic, bytes(msg.payload), bool(msg.retain), corr, content_type)
        self._loop.call_soon_threadsafe(self._record, item)

    def _record(self, item: Received) -> None:
        self.messages.append(item)
        self.last[item.topic] = item
        self._changed.set()

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait until ``predicate()`` is truthy (re-checked on every message) and return it."""
        async with asyncio.timeout(timeout):
            while True:
                result = predicate()
                if result:
                    return result
                self._changed.clear()
                await self._changed.wait()

    async def value(self, topic: str, expected: str | None = None, timeout: float = 10.0) -> str:
        """The latest payload on ``topic`` once there is one (equal to ``expected`` if given)."""

        def check() -> Received | None:
            item = self.last.get(topic)
            if item is None or (expected is not None and item.text != expected):
                return None
            return item

        try:
            result: Received = await self.wait_for(check, timeout)
        except TimeoutError:
            seen = self.last.get(topic)
            raise AssertionError(
                f"{topic}: wanted {expected!r}, last seen {seen.text if seen else None!r}"
            ) from None
        return result.text

    async def next_on(self, topic: str, after: int, timeout: float = 10.0) -> Received:
        """The first message on ``topic`` received after index ``after`` of :attr:`messages`."""

        def check() -> Received | None:
            for item in self.messages[after:]:
                if item.topic == topic:
                    return item
            return None

        result: Received = await self.wait_for(check, timeout)
        return result

    def on(self, topic: str) -> list[Received]:
        return [m for m in self.messages if m.topic == topic]

    async def publish(self, topic: str, payload: str | bytes, retain: bool = False,
                      response_topic: str | None = None, correlation: bytes | None = None) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK (off the event loop)."""
        props = None
        if response_topic is not None:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ResponseTopic = response_topic
            if correlation is not None:
                props.CorrelationData = correlation
        info = self.client.publish(topic, payload, 1, retain, props)
        await asyncio.to_thread(info.wait_for_publish, 5)


async def synced(probe: MqttProbe, root: str = "aqara") -> None:
    """Return once every retained message the broker had at subscribe time has arrived.

    The broker sends retained messages when the subscription is made, before anything published
    later, so a marker published after our SUBACK arrives after all of them.
    """
    marker = f"{root}/_sync/{id(probe)}-{len(probe.messages)}"
    start = len(probe.messages)
    await probe.publish(marker, b"1")
    await probe.next_on(marker, start)


async def eventually(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Wait until ``predicate()`` (state of the process under test, not of a probe) is truthy."""
    async with asyncio.timeout(timeout):
        while True:
            result = predicate()
            if result:
                return result
            await asyncio.sleep(0.02)
