"""MqttLink against real brokers: Mosquitto (MQTT 5) and rumqttd as a 3.1.1-only broker."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import ipaddress
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import bridge.messages
import bridge.mqtt
from bridge.embedded_broker import EmbeddedBroker
from bridge.messages import IncomingMessage, response_properties
from bridge.mqtt import MqttLink, MqttSettings
from tests.logwatch import LogWatch
from tests.mosquitto import Mosquitto, free_port, running_mosquitto
from tests.mqtt_probe import MqttProbe, eventually, synced

pytestmark = pytest.mark.integration

STATE = "link/state"


class Recorder:
    """The link's callbacks: counts connects, keeps messages, lets tests await either."""

    def __init__(self, on_connect: Callable[[], None] = lambda: None) -> None:
        self.connects = 0
        self.messages: list[IncomingMessage] = []
        self._on_connect = on_connect
        self._changed = asyncio.Event()

    def connected(self) -> None:
        self.connects += 1
        self._on_connect()
        self._changed.set()

    def message(self, message: IncomingMessage) -> None:
        self.messages.append(message)
        self._changed.set()

    def topics(self) -> list[str]:
        return [m.topic for m in self.messages]

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                result = predicate()
                if result:
                    return result
                self._changed.clear()
                await self._changed.wait()


def settings(port: int, **overrides: Any) -> MqttSettings:
    values: dict[str, Any] = {"host": "127.0.0.1", "port": port,
                              "client_id": f"link-test-{os.getpid()}-{free_port()}",
                              "will_topic": STATE, "keepalive": 10}
    values.update(overrides)
    return MqttSettings(**values)


def make_link(port: int, subscriptions: list[str] | None = None,
              announce: bool = True, **overrides: Any) -> tuple[MqttLink, Recorder]:
    """A link that publishes retained ``online`` on every connect (as the bridge does)."""
    link: MqttLink | None = None

    def online() -> None:
        assert link is not None
        if announce:
            link.publish(STATE, "online", retain=True)

    recorder = Recorder(online)
    link = MqttLink(settings(port, **overrides), subscriptions or ["link/in/#"],
                    recorder.message, recorder.connected)
    return link, recorder


@contextlib.asynccontextmanager
async def running(link: MqttLink) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(link.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def probe(mosquitto: Mosquitto) -> AsyncIterator[MqttProbe]:
    client = await MqttProbe(mosquitto.port, ["link/#"]).start()
    yield client
    client.stop()


# ---- connect, LWT, graceful stop ------------------------------------------------------------


LINK_PROCESS = """
import asyncio, sys
from bridge.mqtt import MqttLink, MqttSettings

async def main() -> None:
    settings = MqttSettings("127.0.0.1", int(sys.argv[1]), "link-lwt-child", sys.argv[2],
                            keepalive=30)
    link = MqttLink(settings, ["link/in/#"], lambda m: None,
                    lambda: link.publish(sys.argv[2], "online", retain=True))
    task = asyncio.create_task(link.run())
    await link.wait_connected(20)
    print("connected", flush=True)
    await task

asyncio.run(main())
"""


async def test_will_is_published_when_the_client_dies(mosquitto: Mosquitto,
                                                       probe: MqttProbe) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LINK_PROCESS, str(mosquitto.port), STATE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 20)
        assert line.strip() == b"connected"
        await probe.value(STATE, "online")
        child.kill()  # SIGKILL: no DISCONNECT, the broker only sees the socket close
        await asyncio.wait_for(child.wait(), 10)
        assert await probe.value(STATE, "offline") == "offline"
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    late = await MqttProbe(mosquitto.port, [STATE]).start()
    try:
        assert await late.value(STATE) == "offline"
        assert late.last[STATE].retain
    finally:
        late.stop()


async def test_stop_publishes_offline_and_ends_run(mosquitto: Mosquitto,
                                                   probe: MqttProbe) -> None:
    link, recorder = make_link(mosquitto.port)
    task = asyncio.create_task(link.run())
    try:
        await link.wait_connected(10)
        assert link.connected
        assert recorder.connects == 1
        await probe.value(STATE, "online")
        start = len(probe.messages)
        await link.stop()
        offline = await probe.next_on(STATE, start)
        assert offline.text == "offline"
        await asyncio.wait_for(task, 5)  # run() returns by itself after stop()
        assert not link.connected
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert [m.text for m in probe.on(STATE)] == ["online", "offline"]


async def test_publish_reaches_the_broker_and_subscriptions_deliver(
        mosquitto: Mosquitto, probe: MqttProbe) -> None:
    link, recorder = make_link(mosquitto.port, ["link/in/+/set", "link/req/#"])
    async with running(link):
        await link.wait_connected(10)
        await probe.value(STATE, "online")
        link.publish("link/out/a", "1", retain=True)
        link.publish("link/out/b", b"\x00\xff", qos=0)
        assert await probe.value("link/out/a") == "1"
        received = await probe.next_on("link/out/b", 0)
        assert received.payload == b"\x00\xff"
        assert received.retain is False
        await probe.publish("link/in/x/set", "ON")
        await probe.publish("link/in/x/other", "no")  # not subscribed
        await probe.publish("link/req/do/it", "{}", response_topic="link/reply",
                            correlation=b"c-1")
        await recorder.wait_for(lambda: "link/req/do/it" in recorder.topics())
        assert recorder.topics() == ["link/in/x/set", "link/req/do/it"]
        request = recorder.messages[1]
        assert request.response_topic == "link/reply"
        assert request.correlation_data == b"c-1"
        assert recorder.messages[0].payload == b"ON"
        assert recorder.messages[0].retain is False


async def test_reconnects_after_broker_restart_and_resubscribes(mosquitto: Mosquitto) -> None:
    link, recorder = make_link(mosquitto.port)
    async with running(link):
        await link.wait_connected(10)
        assert recorder.connects == 1
        mosquitto.restart()  # no persistence: retained state and sessions are gone
        await recorder.wait_for(lambda: recorder.connects == 2, timeout=20)
        assert link.connected
        fresh = await MqttProbe(mosquitto.port, ["link/#"]).start()
        try:
            assert await fresh.value(STATE, "online") == "online"  # on_connected ran again
            # retained, so it reaches the link whether its SUBSCRIBE is processed before or after
            await fresh.publish("link/in/after-restart", "hello", retain=True)
            await recorder.wait_for(lambda: "link/in/after-restart" in recorder.topics())
            link.publish("link/out/after-restart", "ok")
            assert (await fresh.next_on("link/out/after-restart", 0)).text == "ok"
        finally:
            fresh.stop()


async def test_publishes_made_during_an_outage_do_not_wedge_the_link(
        mosquitto: Mosquitto, logs: LogWatch) -> None:
    link, recorder = make_link(mosquitto.port)
    async with running(link):
        await link.wait_connected(10)
        mosquitto.stop()
        await logs.wait_for("mqtt connection lost")
        assert not link.connected
        link.publish("link/out/event", "during the outage")  # e.g. a bridge/log line
        mosquitto.start()
        await recorder.wait_for(lambda: recorder.connects == 2, timeout=20)
        fresh = await MqttProbe(mosquitto.port, ["link/#"]).start()
        try:
            await fresh.value(STATE, "online", timeout=3)
        finally:
            fresh.stop()


# ---- MQTT 5 features ----------------------------------------------------------------------------


async def test_no_local_the_link_does_not_hear_itself(mosquitto: Mosquitto,
                                                      probe: MqttProbe) -> None:
    link, recorder = make_link(mosquitto.port, ["link/echo/#"])
    async with running(link):
        await link.wait_connected(10)
        assert link.version == "5"
        await probe.value(STATE, "online")
        link.publish("link/echo/mine", "from the link")
        await probe.next_on("link/echo/mine", 0)  # the broker has routed it
        await probe.publish("link/echo/theirs", "from someone else")
        await recorder.wait_for(lambda: recorder.messages)
        assert recorder.topics() == ["link/echo/theirs"]


async def test_extra_subscriptions_with_and_without_no_local(mosquitto: Mosquitto,
                                                              probe: MqttProbe) -> None:
    link, recorder = make_link(mosquitto.port, ["link/in/#"])
    link.subscribe(["link/early/#"])  # not connected yet: nothing to do, nothing raised
    async with running(link):
        await link.wait_connected(10)
        link.subscribe(["link/loop/#"], no_local=False)
        link.subscribe([])
        # retained, so the order of our SUBSCRIBE and this PUBLISH at the broker does not matter
        await probe.publish("link/loop/marker", "m", retain=True)
        await recorder.wait_for(lambda: "link/loop/marker" in recorder.topics())
        link.publish("link/loop/mine", "heard")
        await recorder.wait_for(lambda: "link/loop/mine" in recorder.topics())
        link.unsubscribe(["link/loop/#"])
        await probe.publish("link/in/after", "x")  # on the original subscription
        await recorder.wait_for(lambda: "link/in/after" in recorder.topics())
        await probe.publish("link/early/x", "never subscribed")
        await probe.publish("link/in/last", "x")
        await recorder.wait_for(lambda: "link/in/last" in recorder.topics())
        assert "link/early/x" not in recorder.topics()


async def test_response_properties_carry_correlation_data(mosquitto: Mosquitto,
                                                          probe: MqttProbe) -> None:
    link, _ = make_link(mosquitto.port)
    async with running(link):
        await link.wait_connected(10)
        link.publish("link/reply", "{}", properties=bridge.messages.response_properties(b"\x01id"))
        reply = await probe.next_on("link/reply", 0)
        assert reply.correlation_data == b"\x01id"
        assert reply.content_type == "application/json"
    plain = bridge.messages.response_properties(None)
    shared = bridge.mqtt.content_properties(bridge.messages.JSON)
    assert bridge.mqtt.paho_properties(plain) is shared


async def test_parked_retained_messages_keep_their_content_type(mosquitto: Mosquitto,
                                                                probe: MqttProbe) -> None:
    link, _ = make_link(mosquitto.port)
    async with running(link):
        await link.wait_connected(10)
        text = bridge.mqtt.content_properties(bridge.messages.TEXT)
        link._park_retained("link/parked", b"1.0", 1, text)  # as a slow broker leaves it
        link._flush_parked()
        parked = await probe.next_on("link/parked", 0)
        assert parked.payload == b"1.0"
        assert parked.content_type == bridge.messages.TEXT


async def test_a_parked_topic_that_changes_goes_after_what_was_parked_before(
        mosquitto: Mosquitto, probe: MqttProbe) -> None:
    """Homie's order: ``$state`` init, ``$description``, then ``$state`` ready, all parked: the
    broker must get the description before the ready state."""
    link, _ = make_link(mosquitto.port)
    async with running(link):
        await link.wait_connected(10)
        start = len(probe.messages)
        link.hold("link/nothing/")  # as the guard holds the link while it learns
        link.publish("link/order/state", "init", retain=True)
        link.publish("link/order/description", "{}", retain=True)
        link.publish("link/order/state", "ready", retain=True)
        link.publish("link/order/state", "ready", retain=True)  # again: still once
        link.hold(None)
        await probe.value("link/order/state", "ready")
        got = [(m.topic, m.text) for m in probe.messages[start:] if "/order/" in m.topic]
        assert got == [("link/order/description", "{}"), ("link/order/state", "ready")]
        assert link.parked == 0


# ---- backpressure -------------------------------------------------------------------------------


async def test_backpressure_parks_retained_latest_wins_and_bounds_the_rest(
        mosquitto: Mosquitto, probe: MqttProbe) -> None:
    link, _ = make_link(mosquitto.port, max_queued=4, qos=1, announce=False)
    assert mosquitto.process is not None
    pid = mosquitto.process.pid
    async with running(link):
        await link.wait_connected(10)
        await synced(probe, "link")
        os.kill(pid, signal.SIGSTOP)
        try:
            # one synchronous burst: the loop cannot process any acknowledgement meanwhile
            for n in range(1000):
                link.publish("link/bp/state", str(n), retain=True)
            for n in range(2000):
                link.publish("link/bp/event", str(n))
            assert link.outstanding == 4
            assert link.parked == 1 + 1000  # one retained topic, a bounded deque of the rest
            assert link.dropped == 1000
        finally:
            os.kill(pid, signal.SIGCONT)
        # generous: a loaded machine takes a while to drain what the stopped broker held
        assert await probe.value("link/bp/state", "999", timeout=30) == "999"
        events = await probe.wait_for(
            lambda: (e := probe.on("link/bp/event")) and e[-1].text == "1999" and e, 30)
        assert link.parked == 0
    states = [m.text for m in probe.on("link/bp/state")]
    assert states == ["0", "1", "2", "3", "999"]  # the first window, then only the latest
    assert [m.text for m in events] == [str(n) for n in range(1000, 2000)]  # the newest 1000
    late = await MqttProbe(mosquitto.port, ["link/bp/state"]).start()
    try:
        assert await late.value("link/bp/state") == "999"
    finally:
        late.stop()


async def test_window_parks_lazily_builds_once_and_paces_readers(
        mosquitto: Mosquitto, probe: MqttProbe) -> None:
    link, _ = make_link(mosquitto.port, max_queued=4, qos=1, announce=False)
    assert link.window == 4
    assert mosquitto.process is not None
    pid = mosquitto.process.pid
    builds: list[int] = []

    def document(n: int) -> str:
        builds.append(n)
        return f"doc-{n}"

    async with running(link):
        await link.wait_connected(10)
        await synced(probe, "link")
        await asyncio.wait_for(link.room(), 5)  # nothing parked: room at once
        os.kill(pid, signal.SIGSTOP)
        try:
            for n in range(4):  # fills the window; a lazy payload in the window is built now
                link.publish(f"link/win/{n}", functools.partial(document, n), retain=True)
            assert builds == [0, 1, 2, 3]
            for n in range(4, 10):  # parked: one topic, the latest function wins
                link.publish("link/win/doc", functools.partial(document, n), retain=True)
            for n in range(10):
                link.publish(f"link/win/other/{n}", str(n), retain=True)
            assert builds == [0, 1, 2, 3]  # nothing built while parked
            assert link.outstanding == 4
            assert link.parked == 11
            reader = asyncio.create_task(link.room())  # more than a window parked: readers wait
            await asyncio.sleep(0.1)
            assert not reader.done()
        finally:
            os.kill(pid, signal.SIGCONT)
        await asyncio.wait_for(reader, 10)
        assert await probe.value("link/win/doc", "doc-9") == "doc-9"
        assert builds == [0, 1, 2, 3, 9]  # the parked document built once, when sent
        await probe.value("link/win/other/9", "9")


async def test_paho_socket_has_tcp_nodelay(mosquitto: Mosquitto) -> None:
    link, _ = make_link(mosquitto.port)
    async with running(link):
        await link.wait_connected(10)
        assert link._client is not None
        sock = link._client.socket()
        assert isinstance(sock, socket.socket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


async def test_room_does_not_wait_while_disconnected() -> None:
    link, _ = make_link(free_port())  # never connected
    for n in range(1500):
        link.publish("link/x", str(n))
    await asyncio.wait_for(link.room(), 5)


async def test_non_retained_publishes_while_disconnected_are_bounded() -> None:
    link, _ = make_link(free_port())  # never connected
    for n in range(1500):
        link.publish("link/x", str(n))
    for n in range(10):
        link.publish("link/r", str(n), retain=True)  # the latest per topic
    assert link.parked == 1001
    assert link.dropped == 500
    assert link.outstanding == 0


# ---- MQTT 3.1.1 brokers that do not refuse MQTT 5 --------------------------------------------


async def test_a_hang_up_on_mqtt5_falls_back_to_311_and_311_works_when_configured() -> None:
    # rumqttd's 3.1.1 listener closes the connection on an MQTT 5 CONNECT instead of refusing it
    # (amqtt stays silent): the link tries 3.1.1 at once, for that connection only (see
    # tests/integration/test_mqtt_failover.py); configured for 3.1.1 it goes there directly.
    port = free_port()
    broker = EmbeddedBroker("127.0.0.1", port)
    await broker.start()
    try:
        # no will, as `check` probes: rumqttd may publish a will after a clean DISCONNECT, which
        # would land after the second link's retained `online`
        hung_up = MqttLink(settings(port, version="5", will_topic=""), [], lambda _m: None,
                           lambda: None)
        assert await asyncio.wait_for(hung_up.probe(), 20) is None
        assert hung_up.version == "3.1.1"
        assert hung_up.fallback_reason is not None
        assert "hung up" in hung_up.fallback_reason
        link, recorder = make_link(port, ["link/in/#"], version="3.1.1")
        async with running(link):
            await link.wait_connected(20)
            assert link.version == "3.1.1"
            assert recorder.connects == 1
            watcher = await MqttProbe(port, ["link/#"], protocol=paho.MQTTv311).start()
            try:
                assert await watcher.value(STATE, "online") == "online"
                link.publish("link/out", "works")
                assert (await watcher.next_on("link/out", 0)).text == "works"
                await watcher.publish("link/in/cmd", "ON")
                await recorder.wait_for(lambda: recorder.topics() == ["link/in/cmd"])
            finally:
                watcher.stop()
    finally:
        await broker.stop()


# ---- probe -------------------------------------------------------------------------------------


async def test_probe_reports_a_refused_port() -> None:
    link = MqttLink(settings(free_port()), [], lambda _m: None, lambda: None)
    reason = await asyncio.wait_for(link.probe(), 15)
    assert reason is not None
    assert "cannot reach broker" in reason
    assert "refused" in reason.lower()
    assert not link.connected


async def test_probe_accepts_a_live_broker(mosquitto: Mosquitto, probe: MqttProbe) -> None:
    connected: list[int] = []
    link = MqttLink(settings(mosquitto.port), ["link/in/#"], lambda _m: None,
                    lambda: connected.append(1))
    assert await asyncio.wait_for(link.probe(), 15) is None
    assert not link.connected  # probe disconnects again
    # a clean DISCONNECT: the broker does not publish the will
    await synced(probe, "link")
    assert probe.on(STATE) == []


async def test_probe_without_subscriptions_accepts_a_live_broker(mosquitto: Mosquitto) -> None:
    link = MqttLink(settings(mosquitto.port), [], lambda _m: None, lambda: None)
    assert await asyncio.wait_for(link.probe(), 15) is None


# ---- authentication -----------------------------------------------------------------------------

USER = "bridge-user"
PASSWORD = "s3cret-Pa55-9d1f"


@contextlib.contextmanager
def password_mosquitto() -> Iterator[int]:
    """Mosquitto that only admits USER with PASSWORD (a real password file)."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with tempfile.TemporaryDirectory(prefix="mosq-auth-") as tmp:
        passwords = Path(tmp) / "passwd"
        subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwords), USER, PASSWORD],
                       check=True, capture_output=True, timeout=30)
        passwords.chmod(0o600)
        port = free_port()
        conf = Path(tmp) / "mosquitto.conf"
        # as root, mosquitto drops to its own user, which could not read the file in our tmp dir
        user = "user root\n" if os.geteuid() == 0 else ""
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous false\n"
                        f"password_file {passwords}\npersistence false\nlog_dest none\n{user}")
        process = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                with contextlib.suppress(OSError), socket.create_connection(
                        ("127.0.0.1", port), timeout=0.2):
                    break
                assert process.poll() is None, "mosquitto exited"
                assert time.monotonic() < deadline, "mosquitto did not start"
                time.sleep(0.02)
            yield port
        finally:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def auth_port() -> Iterator[int]:
    with password_mosquitto() as port:
        yield port


@pytest.mark.parametrize("version", ["5", "3.1.1"])
async def test_wrong_password_is_refused_clearly_without_leaking(
        auth_port: int, version: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-Pa55-77c2"
    link = MqttLink(settings(auth_port, username=USER, password=wrong, version=version), [],
                    lambda _m: None, lambda: None)
    reason = await asyncio.wait_for(link.probe(), 15)
    assert reason is not None
    assert reason.startswith("broker refused the connection: ")
    assert any(word in reason.lower() for word in ("not authori", "password")), reason
    assert link.version == version  # an authentication refusal is not a protocol problem
    assert wrong not in reason
    assert wrong not in caplog.text
    for record in caplog.records:
        assert wrong not in record.getMessage()
        assert wrong not in repr(record.__dict__)


async def test_run_logs_the_refusal_without_the_password(auth_port: int,
                                                         logs: LogWatch) -> None:
    wrong = "wrong-Pa55-3e8a"
    link, recorder = make_link(auth_port, username=USER, password=wrong)
    async with running(link):
        line = await logs.wait_for("mqtt connection failed")
    assert recorder.connects == 0
    assert "not authori" in line.lower() or "password" in line.lower(), line
    assert wrong not in logs.text


async def test_right_password_is_accepted(auth_port: int) -> None:
    link, recorder = make_link(auth_port, username=USER, password=PASSWORD)
    async with running(link):
        await link.wait_connected(10)
        assert recorder.connects == 1
        assert link.version == "5"


# ---- MQTT 5 -> 3.1.1 per connection attempt -----------------------------------------------------


async def _read_connect(reader: asyncio.StreamReader) -> int:
    """Read one CONNECT packet; its protocol level (4 = 3.1.1, 5 = MQTT 5)."""
    assert (await reader.readexactly(1))[0] >> 4 == 1, "not a CONNECT"
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    body = await reader.readexactly(length)
    return body[6]  # after the protocol name b"\x00\x04MQTT"


async def test_mqtt5_refusal_falls_back_for_that_connection_only(logs: LogWatch) -> None:
    # A real socket that answers like a 3.1.1-only broker: CONNACK "unacceptable protocol
    # version" to MQTT 5, acceptance to 3.1.1.
    levels: list[int] = []
    accepted: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        level = await _read_connect(reader)
        levels.append(level)
        writer.write(b"\x20\x02\x00\x01" if level == 5 else b"\x20\x02\x00\x00")
        await writer.drain()
        if level == 5:
            writer.close()
            return
        accepted.append(writer)
        with contextlib.suppress(OSError):
            while await reader.read(4096):
                pass

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        recorder = Recorder()
        link = MqttLink(settings(port), [], recorder.message, recorder.connected)
        async with running(link):
            await link.wait_connected(20)
            assert link.version == "3.1.1"
            accepted[0].close()  # the broker hangs up: the next attempt tries MQTT 5 again
            await recorder.wait_for(lambda: recorder.connects == 2, 20)
            assert link.version == "3.1.1"
    finally:
        server.close()
    assert levels == [5, 4, 5, 4]
    assert logs.count("refused MQTT 5") == 1  # said once, clearly; later at debug level


async def test_a_silent_broker_does_not_downgrade_mqtt5(
        mosquitto: Mosquitto, probe: MqttProbe, logs: LogWatch,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bridge.mqtt, "CONNACK_TIMEOUT", 1.0)
    assert mosquitto.process is not None
    pid = mosquitto.process.pid
    link, _ = make_link(mosquitto.port)
    os.kill(pid, signal.SIGSTOP)  # accepts TCP (the kernel does) but never answers CONNECT
    try:
        async with running(link):
            await logs.wait_for("no CONNACK", timeout=20)  # a silent attempt (or more)
            os.kill(pid, signal.SIGCONT)
            await link.wait_connected(30)
            assert link.version == "5"
            # an MQTT 5 feature end to end: correlation data reaches an MQTT 5 subscriber
            link.publish("link/out", "answer", properties=response_properties(b"corr-7"))
            received = await probe.next_on("link/out", 0)
            assert received.correlation_data == b"corr-7"
    finally:
        os.kill(pid, signal.SIGCONT)
    assert logs.count("refused MQTT 5", logging.DEBUG) == 0


# ---- TLS errors say TLS --------------------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
          issuer_key: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None
           ) -> str:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
    return str(path)


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, str]:
    """A throwaway CA with a server certificate, and a client certificate from another CA."""
    ca_key, rogue_key, server_key, client_key = _key(), _key(), _key(), _key()
    ca = _cert("test CA", ca_key, "test CA", ca_key, ca=True)
    rogue = _cert("rogue CA", rogue_key, "rogue CA", rogue_key, ca=True)
    files = {
        "ca": _write(tmp_path / "ca.pem", ca),
        "rogue_ca": _write(tmp_path / "rogue-ca.pem", rogue),
        "server": _write(tmp_path / "server.pem",
                         _cert("127.0.0.1", server_key, "test CA", ca_key, ca=False), server_key),
        "client": _write(tmp_path / "client.pem",
                         _cert("bridge", client_key, "rogue CA", rogue_key, ca=False),
                         client_key),
    }
    files["server_key"] = files["server"].replace(".pem", ".key")
    files["client_key"] = files["client"].replace(".pem", ".key")
    return files


@pytest.fixture
def tls_broker(tls_files: dict[str, str]) -> Iterator[Mosquitto]:
    """Mosquitto with a TLS listener that requires a client certificate from its CA."""
    user = "user root\n" if os.geteuid() == 0 else ""  # else it could not read our tmp files
    extra = (f"cafile {tls_files['ca']}\ncertfile {tls_files['server']}\n"
             f"keyfile {tls_files['server_key']}\nrequire_certificate true\n{user}")
    with running_mosquitto(extra) as broker:
        yield broker


async def test_a_refused_client_certificate_is_reported_as_tls(
        tls_broker: Mosquitto, tls_files: dict[str, str]) -> None:
    link = MqttLink(settings(tls_broker.port, use_tls=True, tls_ca=tls_files["ca"],
                             tls_cert=tls_files["client"], tls_key=tls_files["client_key"]),
                    [], lambda _m: None, lambda: None)
    reason = await asyncio.wait_for(link.probe(), 20)
    assert reason is not None
    assert reason.startswith("TLS"), reason
    assert tls_files["client"] in reason
    assert "CONNACK" not in reason


async def test_a_missing_client_certificate_is_reported_as_tls(
        tls_broker: Mosquitto, tls_files: dict[str, str]) -> None:
    link = MqttLink(settings(tls_broker.port, use_tls=True, tls_ca=tls_files["ca"]),
                    [], lambda _m: None, lambda: None)
    reason = await asyncio.wait_for(link.probe(), 20)
    assert reason is not None
    assert "TLS" in reason, reason
    assert "client certificate" in reason


async def test_an_untrusted_broker_certificate_names_the_ca_file(
        tls_broker: Mosquitto, tls_files: dict[str, str]) -> None:
    link = MqttLink(settings(tls_broker.port, use_tls=True, tls_ca=tls_files["rogue_ca"]),
                    [], lambda _m: None, lambda: None)
    reason = await asyncio.wait_for(link.probe(), 20)
    assert reason is not None
    assert reason.startswith("TLS handshake failed"), reason
    assert tls_files["rogue_ca"] in reason


async def test_an_unreadable_tls_file_is_a_reason_not_a_crash(tmp_path: Path,
                                                              logs: LogWatch) -> None:
    missing = str(tmp_path / "no-such-ca.pem")
    link, recorder = make_link(free_port(), use_tls=True, tls_ca=missing)
    async with running(link) as task:
        line = await logs.wait_for("mqtt connection failed")
        assert not task.done()  # the link keeps retrying: the file may appear
    assert f"TLS: cannot use the CA file {missing}" in line
    assert recorder.connects == 0


async def test_a_burst_over_tls_is_delivered_whole(tls_files: dict[str, str]) -> None:
    # the link buffers its socket I/O: over TLS a refused write must be offered again as it was
    user = "user root\n" if os.geteuid() == 0 else ""
    extra = (f"cafile {tls_files['ca']}\ncertfile {tls_files['server']}\n"
             f"keyfile {tls_files['server_key']}\n{user}")
    with running_mosquitto(extra) as broker:
        link, recorder = make_link(broker.port, use_tls=True, tls_ca=tls_files["ca"])
        async with running(link):
            await recorder.wait_for(lambda: recorder.connects, timeout=20)
            payload = "x" * 2000  # ≈ 6 MB: more than the socket takes at once
            for i in range(3000):
                link.publish(f"link/tls/{i}", payload, retain=True)
            await eventually(lambda: link.outstanding == 0 and link.parked == 0, timeout=60)
            assert link.acknowledged == link.published
            assert link.published >= 3000
            assert link.connected
