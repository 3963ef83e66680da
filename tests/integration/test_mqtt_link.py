"""MqttLink against real brokers: Mosquitto (MQTT 5) and the embedded amqtt (MQTT 3.1.1 only)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
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

import bridge.mqtt
from bridge.embedded_broker import EmbeddedBroker
from bridge.mqtt import IncomingMessage, MqttLink, MqttSettings
from tests.mosquitto import Mosquitto, free_port
from tests.mqtt_probe import MqttProbe, synced

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


class LogWatch(logging.Handler):
    """Every log line of the process, awaitable: the link reports a lost or refused connection
    only in its log (there is no public event for it)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self._loop.call_soon_threadsafe(self._changed.set)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    async def wait_for(self, text: str, after: int = 0, timeout: float = 10.0) -> str:
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines[after:]:
                    if text in line:
                        return line
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def logs() -> AsyncIterator[LogWatch]:
    watch = LogWatch()
    root = logging.getLogger()
    level = root.level
    root.addHandler(watch)
    root.setLevel(logging.DEBUG)
    try:
        yield watch
    finally:
        root.removeHandler(watch)
        root.setLevel(level)


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
        link.publish("link/reply", "{}", properties=bridge.mqtt.response_properties(b"\x01id"))
        reply = await probe.next_on("link/reply", 0)
        assert reply.correlation_data == b"\x01id"
    assert bridge.mqtt.response_properties(None) is None


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
        assert await probe.value("link/bp/state", "999") == "999"
        events = await probe.wait_for(
            lambda: (e := probe.on("link/bp/event")) and e[-1].text == "1999" and e)
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
        link.publish("link/r", str(n), retain=True)  # republished whole on connect instead
    assert link.parked == 1000
    assert link.dropped == 500
    assert link.outstanding == 0


# ---- MQTT 3.1.1 fallback (amqtt) ---------------------------------------------------------------


async def test_falls_back_to_311_against_the_embedded_broker(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # amqtt neither refuses nor answers an MQTT 5 CONNECT: the link gives up waiting for the
    # CONNACK and retries with 3.1.1. Shorten that wait so the test stays fast.
    monkeypatch.setattr(bridge.mqtt, "CONNACK_TIMEOUT", 2.0)
    port = free_port()
    broker = EmbeddedBroker("127.0.0.1", port)
    await broker.start()
    try:
        link, recorder = make_link(port, ["link/in/#"], version="5")
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
