"""The MQTT link's batched socket I/O and lean QoS 1 publishing, against a real Mosquitto.

bridge/mqtt.py's ``_Client`` coalesces paho's socket writes per loop turn, buffers its reads,
and publishes QoS 1 without paho's per-message objects; these tests hold it to what paho did.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from paho.mqtt import _packet

from bridge.messages import IncomingMessage, PublishProperties
from bridge.mqtt import MqttLink, MqttSettings, _Client
from tests.mosquitto import Mosquitto, free_port
from tests.mqtt_probe import MqttProbe, eventually

pytestmark = pytest.mark.integration

BURST = 3000
TEXT = PublishProperties("text/plain; charset=utf-8")


def new_link(port: int, received: list[IncomingMessage] | None = None,
             version: str = "5") -> MqttLink:
    settings = MqttSettings("127.0.0.1", port, f"batch-{os.getpid()}-{free_port()}",
                            "batch/state", keepalive=10, version=version)
    sink: Callable[[IncomingMessage], None] = (received.append if received is not None
                                                else lambda _m: None)
    return MqttLink(settings, ["batch/in/#"], sink, lambda: None)


@contextlib.asynccontextmanager
async def connected(link: MqttLink) -> AsyncIterator[_Client]:
    task = asyncio.create_task(link.run())
    try:
        await link.wait_connected(20)
        assert isinstance(link._client, _Client)
        yield link._client
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
def decoded_pubacks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the PUBACKs paho's own decoder handles (a spy: paho still decodes them)."""
    calls: list[int] = []
    original = _packet.decode_puback

    def spy(*args: Any) -> Any:
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(_packet, "decode_puback", spy)
    return calls


@pytest.mark.parametrize("version", ["5", "3.1.1"])
async def test_a_burst_leaves_in_a_few_sends_and_every_message_is_acknowledged(
        mosquitto: Mosquitto, decoded_pubacks: list[int], version: str) -> None:
    probe = await MqttProbe(mosquitto.port, ["batch/out/#"]).start()
    link = new_link(mosquitto.port, version=version)
    try:
        async with connected(link) as client:
            sends_before = client.sends
            for i in range(BURST):  # one loop turn: a window goes out, the rest is parked
                link.publish(f"batch/out/{i}", f"v{i}", retain=True, properties=TEXT)
            link.publish("nobody/listens", "x", retain=True)  # PUBACK 0x10 in MQTT 5
            await eventually(lambda: link.outstanding == 0 and link.parked == 0)
            assert link.acknowledged == link.published == BURST + 1
            await probe.wait_for(lambda: len(probe.last) == BURST, timeout=30)
            assert all(probe.last[f"batch/out/{i}"].text == f"v{i}" for i in range(BURST))
            assert probe.last["batch/out/7"].content_type == (
                "text/plain; charset=utf-8" if version == "5" else None)
            assert client.sends - sends_before <= BURST // 20
            assert link.denied == 0
            assert decoded_pubacks == []  # every PUBACK took the short path
            assert not client._out_messages  # paho kept nothing per message
    finally:
        probe.stop()


async def test_messages_read_among_acknowledgements_are_all_handled(
        mosquitto: Mosquitto) -> None:
    received: list[IncomingMessage] = []
    link = new_link(mosquitto.port, received)
    sender = await MqttProbe(mosquitto.port, ["batch/unused"]).start()
    try:
        async with connected(link):
            while not received:  # until the link's subscription is live
                sender.client.publish("batch/in/ready", "", 1)
                with contextlib.suppress(TimeoutError):
                    await eventually(lambda: received, timeout=1)
            received.clear()
            for i in range(BURST):
                link.publish(f"batch/out/{i}", "x", retain=True)
            for i in range(200):  # arrive interleaved with the PUBACKs of the burst
                sender.client.publish(f"batch/in/{i}", str(i), 1)
            await eventually(lambda: len(received) == 200)
            assert [m.payload for m in received] == [str(i).encode() for i in range(200)]
            await eventually(lambda: link.outstanding == 0 and link.parked == 0)
    finally:
        sender.stop()


async def test_the_stop_payload_still_goes_through_paho_and_is_awaited(
        mosquitto: Mosquitto) -> None:
    probe = await MqttProbe(mosquitto.port, ["batch/state"]).start()
    link = new_link(mosquitto.port)
    try:
        async with connected(link):
            link.publish("batch/state", "online", retain=True)
            await probe.value("batch/state", "online")
            await link.stop()  # publish() + wait_for_publish, then a written-through DISCONNECT
            await probe.value("batch/state", "offline")
    finally:
        probe.stop()


async def test_what_a_turn_published_is_written_before_the_loop_polls_again(
        mosquitto: Mosquitto) -> None:
    link = new_link(mosquitto.port)
    async with connected(link) as client:
        for _ in range(3):
            sends = client.sends
            for i in range(50):
                link.publish(f"batch/out/{i}", "x", retain=True)
            assert client.want_write()  # queued, not yet written
            await asyncio.sleep(0)  # the callbacks queued so far run, the loop has not polled
            assert not client.want_write()
            assert client.sends == sends + 1
        await eventually(lambda: link.outstanding == 0)
