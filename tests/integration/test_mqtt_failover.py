"""MqttLink against brokers that fail: a cluster node going away, a broker dropping the bridge
after a publish it refuses (a real NATS, and a relay doing the same in front of Mosquitto), one
hanging up on MQTT 5, one accepting and dropping every connection. Real sockets, 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bridge.connect_policy import MID_SPACE, QOS0_RING
from bridge.messages import IncomingMessage
from bridge.mqtt import MqttLink
from tests.integration.test_mqtt_link import STATE, running, settings
from tests.logwatch import LogWatch
from tests.mosquitto import Mosquitto, free_port, running_mosquitto
from tests.mqtt_probe import MqttProbe

pytestmark = pytest.mark.integration



def low(a: float, _b: float) -> float:
    """Backoff jitter that always waits the least: the test's timing is known."""
    return a


class Recorder:
    """The link's callbacks: counts connects, keeps messages and blocks, lets tests await."""

    def __init__(self) -> None:
        self.connects = 0
        self.messages: list[IncomingMessage] = []
        self.blocks: list[tuple[str, str]] = []
        self.publish: Callable[[], None] = lambda: None
        self._changed = asyncio.Event()

    def connected(self) -> None:
        self.connects += 1
        self.publish()
        self._changed.set()

    def message(self, message: IncomingMessage) -> None:
        self.messages.append(message)
        self._changed.set()

    def blocked(self, topic: str, reason: str) -> None:
        self.blocks.append((topic, reason))
        self._changed.set()

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                result = predicate()
                if result:
                    return result
                self._changed.clear()
                await self._changed.wait()


def make_link(port: int, **overrides: Any) -> tuple[MqttLink, Recorder]:
    """A link that publishes retained ``online`` on every connect (as the bridge does)."""
    recorder = Recorder()
    link = MqttLink(settings(port, **overrides), ["link/in/#"], recorder.message,
                    recorder.connected)
    recorder.publish = lambda: link.publish(STATE, "online", retain=True)
    link.on_blocked = recorder.blocked
    link._rotation.jitter = low
    return link, recorder


# ---- a relay that misbehaves on purpose ---------------------------------------------------------


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One MQTT packet: its first byte and its body."""
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first, await reader.readexactly(length)


def packet_bytes(first: int, body: bytes) -> bytes:
    out = bytearray([first])
    remaining = len(body)
    while remaining > 0x7F:
        out.append(remaining & 0x7F | 0x80)
        remaining >>= 7
    out.append(remaining)
    return bytes(out) + body


class Relay:
    """A listener in front of Mosquitto (``upstream``), or in place of a broker: it records the
    protocol level and time of each CONNECT and, as configured, hangs up on MQTT 5, closes the
    connection at a PUBLISH whose topic ``drop_publish`` picks (it never reaches the broker;
    what came before it is answered first, as NATS does), or (no upstream) answers CONNACK and
    closes at once."""

    def __init__(self, upstream: int | None = None, hang_up_on_mqtt5: bool = False,
                 drop_publish: Callable[[str], bool] | None = None) -> None:
        self.upstream = upstream
        self.hang_up_on_mqtt5 = hang_up_on_mqtt5
        self.drop_publish = drop_publish
        self.levels: list[int] = []
        self.times: list[float] = []
        self.dropped: list[str] = []
        self._clients: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Event()
        self.port = 0

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.drop_all()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    def drop_all(self) -> None:
        """Close every client connection (as a broker going away does)."""
        for writer in list(self._clients):
            writer.close()

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            first, body = await read_packet(reader)
            assert first >> 4 == 1, "not a CONNECT"
            level = body[6]  # after the protocol name b"\x00\x04MQTT"
            self.levels.append(level)
            self.times.append(asyncio.get_running_loop().time())
            self._changed.set()
            if self.hang_up_on_mqtt5 and level == 5:
                return
            if self.upstream is None:  # accept, then drop the client at once
                writer.write(b"\x20\x03\x00\x00\x00" if level == 5 else b"\x20\x02\x00\x00")
                await writer.drain()
                return
            await self._relay(first, body, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._clients.discard(writer)
            writer.close()

    async def _relay(self, first: int, body: bytes, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        assert self.upstream is not None
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)

        async def back() -> None:
            with contextlib.suppress(ConnectionError):
                while data := await up_reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.close()

        answers = asyncio.create_task(back())
        try:
            up_writer.write(packet_bytes(first, body))
            while True:
                first, body = await read_packet(reader)
                if first >> 4 == 3 and self.drop_publish is not None:  # PUBLISH
                    topic = body[2:2 + int.from_bytes(body[:2], "big")].decode()
                    if self.drop_publish(topic):
                        # as NATS: what came before is answered, then the connection closes (a
                        # DISCONNECT instead: the broker answers the rest, then hangs up)
                        self.dropped.append(topic)
                        self._changed.set()
                        up_writer.write(b"\xe0\x00")
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(asyncio.shield(answers), 5)
                        return
                up_writer.write(packet_bytes(first, body))
                await up_writer.drain()
        finally:
            answers.cancel()
            up_writer.close()


# ---- (a) failover between two Mosquittos --------------------------------------------------------


@pytest.fixture
def second() -> Iterator[Mosquitto]:
    with running_mosquitto() as broker:
        yield broker


async def test_the_link_moves_to_the_next_broker_and_back(
        mosquitto: Mosquitto, second: Mosquitto, logs: LogWatch) -> None:
    link, recorder = make_link(mosquitto.port, failover=(("127.0.0.1", second.port),))
    link._rotation.jitter = lambda a, b: b  # the longest backoff: the bound below holds anyway
    loop = asyncio.get_running_loop()
    watch_second = await MqttProbe(second.port, ["link/#"]).start()
    try:
        async with running(link):
            await link.wait_connected(10)
            assert (link.broker, link.broker_index) == (f"127.0.0.1:{mosquitto.port}", 0)
            start = loop.time()
            await asyncio.to_thread(mosquitto.stop)
            await recorder.wait_for(lambda: recorder.connects == 2)
            moved = loop.time() - start
            assert (link.broker, link.broker_index) == (f"127.0.0.1:{second.port}", 1)
            assert moved < 2.0, f"failover took {moved:.3f} s"  # no backoff: the next one at once
            assert await watch_second.value(STATE, "online") == "online"
            link.publish("link/out/there", "flows")
            assert (await watch_second.next_on("link/out/there", 0)).text == "flows"
            assert any("mqtt connected" in line and f"127.0.0.1:{second.port}" in line
                       for line in logs.lines)

            await asyncio.to_thread(mosquitto.start)
            start = loop.time()
            await asyncio.to_thread(second.stop)
            await recorder.wait_for(lambda: recorder.connects == 3)
            back = loop.time() - start
            assert (link.broker, link.broker_index) == (f"127.0.0.1:{mosquitto.port}", 0)
            # both connections were short: the round is complete, one backoff (1 s at most)
            assert back < 3.0, f"failing back took {back:.3f} s"
            watch_first = await MqttProbe(mosquitto.port, ["link/#"]).start()
            try:
                link.publish("link/out/back", "home")
                assert (await watch_first.next_on("link/out/back", 0)).text == "home"
            finally:
                watch_first.stop()
    finally:
        watch_second.stop()
    print(f"failover {moved * 1000:.0f} ms, back {back * 1000:.0f} ms")


async def test_probe_tries_the_brokers_in_order(mosquitto: Mosquitto) -> None:
    dead = free_port()
    link, _ = make_link(dead, failover=(("127.0.0.1", mosquitto.port),), will_topic="")
    assert await asyncio.wait_for(link.probe(), 15) is None
    assert link.broker == f"127.0.0.1:{mosquitto.port}"
    assert not link.connected
    other = free_port()
    nowhere, _ = make_link(dead, failover=(("127.0.0.1", other),), will_topic="")
    reason = await asyncio.wait_for(nowhere.probe(), 15)
    assert reason is not None
    assert reason.startswith(f"127.0.0.1:{dead}: cannot reach broker")
    assert f"; 127.0.0.1:{other}: cannot reach broker" in reason


# ---- (b) a broker that drops the connection after a publish to a topic with '.' -----------------


@contextlib.contextmanager
def running_nats() -> Iterator[int]:
    """A real NATS server with MQTT (and the JetStream it needs) on free loopback ports; the
    MQTT port. Skips the test without ``nats-server`` (Debian: ``apt install nats-server``)."""
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not os.access(binary, os.X_OK):
        pytest.skip("nats-server is not installed")
    with tempfile.TemporaryDirectory(prefix="nats-") as tmp:
        mqtt_port, client_port = free_port(), free_port()
        conf = Path(tmp) / "nats.conf"
        conf.write_text(f"listen: 127.0.0.1:{client_port}\nserver_name: link_test\n"
                        f'jetstream {{store_dir: "{tmp}/js"}}\n'
                        f"mqtt {{listen: 127.0.0.1:{mqtt_port}}}\n")
        process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 15
            while True:
                with contextlib.suppress(OSError), socket.create_connection(
                        ("127.0.0.1", mqtt_port), timeout=0.2):
                    break
                assert process.poll() is None, f"nats-server exited with {process.returncode}"
                assert time.monotonic() < deadline, "nats-server did not start"
                time.sleep(0.02)
            yield mqtt_port
        finally:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(params=["nats", "relay"])
async def dot_dropper(request: pytest.FixtureRequest) -> AsyncIterator[tuple[int, int, bool]]:
    """A broker that drops a client publishing to a topic with '.': (the link's port, a
    subscriber's port, whether that is NATS)."""
    if request.param == "nats":
        with running_nats() as port:
            yield port, port, True
    else:
        with running_mosquitto() as broker:
            async with Relay(broker.port, drop_publish=lambda topic: "." in topic) as relay:
                yield relay.port, broker.port, False


async def test_a_topic_the_broker_drops_us_for_is_blocked_not_looped_on(
        dot_dropper: tuple[int, int, bool], logs: LogWatch) -> None:
    port, watch_port, nats = dot_dropper
    dotted = [f"link/dev.{n}/state" for n in range(3)]
    plain = [f"link/plain/{n}" for n in range(3)]
    mixed = [topic for pair in zip(plain, dotted, strict=True) for topic in pair]
    link, recorder = make_link(port)

    def republish() -> None:  # every connect, as the bridge republishes its state
        link.publish(STATE, "online", retain=True)
        for n, topic in enumerate(mixed):
            link.publish(topic, f"v{n}", retain=True)

    recorder.publish = republish
    watcher = await MqttProbe(watch_port, ["link/#"], protocol=paho.MQTTv311).start()
    try:
        async with running(link):
            await recorder.wait_for(lambda: recorder.blocks, timeout=20)
            await watcher.wait_for(lambda: all(t in watcher.last for t in plain), timeout=20)
            assert recorder.connects == 3  # dropped twice, then the topics with '.' are held
            [(topic, reason)] = recorder.blocks  # said once
            assert topic == dotted[0]
            assert "'.'" in reason
            assert reason.endswith("topics containing '.' are no longer published")
            assert link.blocked == [{"topic": dotted[0], "rule": "topics containing '.'",
                                     "reason": reason}]
            if nats:
                assert link.version == "3.1.1"  # NATS refuses MQTT 5: no configuration needed
                assert link.fallback_reason is not None
                assert link.fallback_reason.startswith("refused")
            # no loop: another round, a plain marker after it, and the same connection
            before = link.blocked_publishes
            assert before >= len(dotted)
            republish()
            link.publish("link/plain/last", "marker")
            assert (await watcher.next_on("link/plain/last", 0)).text == "marker"
            assert recorder.connects == 3
            assert link.connected
            assert link.blocked_publishes == before + len(dotted)
    finally:
        watcher.stop()
    assert not any(t in watcher.last for t in dotted)
    assert logs.count("no longer published") == 0  # the callback said it; not logged again


async def test_without_a_callback_the_block_is_logged(logs: LogWatch) -> None:
    with running_mosquitto() as broker:
        async with Relay(broker.port, drop_publish=lambda topic: " " in topic) as relay:
            link, recorder = make_link(relay.port, qos=0)  # QoS 0: from the ring of sends
            link.on_blocked = None

            def republish() -> None:
                link.publish(STATE, "online", retain=True)
                link.publish("link/Living Room/x", "1")
                link.publish("link/ok", "1")

            recorder.publish = republish
            async with running(link):
                line = await logs.wait_for("no longer published", timeout=20)
                await recorder.wait_for(lambda: recorder.connects == 3)
    assert "right after a publish to 'link/Living Room/x'" in line
    assert "whitespace" in line
    assert relay.dropped == ["link/Living Room/x"] * 2


def test_the_packet_id_counter_the_analysis_reads_is_pahos() -> None:
    # bridge.mqtt reads paho's counter of packet ids (private) to order what was in flight
    client = paho.Client(CallbackAPIVersion.VERSION2)
    assert client._last_mid == 0
    assert [client._mid_generate() for _ in range(2)] == [1, 2]
    client._last_mid = MID_SPACE - 1
    assert [client._mid_generate() for _ in range(2)] == [MID_SPACE, 1]
    assert QOS0_RING > 0


# ---- (c) a broker that hangs up on MQTT 5 -------------------------------------------------------


async def test_a_hang_up_on_mqtt5_gets_311_for_that_connection_only(
        mosquitto: Mosquitto, logs: LogWatch) -> None:
    watcher = await MqttProbe(mosquitto.port, ["link/#"]).start()
    try:
        async with Relay(mosquitto.port, hang_up_on_mqtt5=True) as relay:
            link, recorder = make_link(relay.port)  # version "5", as configured by default
            async with running(link):
                await link.wait_connected(20)
                assert link.version == "3.1.1"
                assert link.fallback_reason is not None
                assert "hung up" in link.fallback_reason
                link.publish("link/out", "over 3.1.1")
                assert (await watcher.next_on("link/out", 0)).text == "over 3.1.1"
                relay.drop_all()  # the connection is lost: the next one tries MQTT 5 first again
                await recorder.wait_for(lambda: recorder.connects == 2)
                assert link.version == "3.1.1"
        assert relay.levels == [5, 4, 5, 4]
    finally:
        watcher.stop()
    assert logs.count("hung up on the MQTT 5 CONNECT") == 1  # a warning once
    assert logs.count("hung up on the MQTT 5 CONNECT", logging.DEBUG) == 2  # then at debug


async def test_a_configured_311_is_tried_alone(mosquitto: Mosquitto) -> None:
    async with Relay(mosquitto.port, hang_up_on_mqtt5=True) as relay:
        link, _ = make_link(relay.port, version="3.1.1")
        async with running(link):
            await link.wait_connected(20)
            assert link.fallback_reason is None
    assert relay.levels == [4]


# ---- (d) a broker that accepts and drops every connection ---------------------------------------


async def test_connections_that_do_not_last_back_off(logs: LogWatch) -> None:
    async with Relay() as relay:  # CONNACK, then close, every time
        link, _ = make_link(relay.port, reconnect_max_delay=4.0)
        async with running(link):
            await relay.wait_for(lambda: len(relay.times) >= 4, timeout=20)
        times = relay.times[:4]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # the least jitter of 1, 2, 4 s (not a connect per second: each CONNACK was accepted)
    for gap, wait in zip(gaps, [0.5, 1.0, 2.0], strict=True):
        assert wait <= gap < wait + 0.5, gaps
    assert relay.levels == [5, 5, 5, 5]  # accepted: no reason to try 3.1.1
    assert link.blocked == []  # the state topic published on each connect is never blocked
