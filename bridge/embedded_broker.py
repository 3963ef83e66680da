"""The demo's own MQTT broker: Mosquitto when it is installed, else rumqttd embedded by iotcore.

Both listen on loopback only and keep nothing on disk. Mosquitto serves MQTT 3.1.1 and 5 on one
port. rumqttd (the ``demo`` extra, ``pip install '.[demo]'``) serves one protocol per port, and
the demo gives it MQTT 5 only: rumqttd 0.20 panics in a 3.1.1 connection that is sent a message
carrying MQTT 5 properties (a ``mosquitto_rr`` request, a response with correlation data), so a
3.1.1 listener beside the MQTT 5 one would drop 3.1.1 subscribers. Its clients therefore need
``-V mqttv5`` (:attr:`client_flags`).

rumqttd 0.20 also loses retained messages: when a subscription is made it sends the retained
messages the filter matches once, cut to the free slots of the connection's in-flight window
(router/routing.rs ``retained_publishes.truncate(inflight_slots)``, then
``forward_retained = false``). For QoS 1 and 2 that window is a compile-time 100
(``MAX_INFLIGHT`` in router/iobufs.rs: ``max_inflight_count`` in the config is something else, the
network read batch), for QoS 0 it is ``max_outgoing_packet_count``. So a QoS 1
``mosquitto_sub -t 'aqara/#'`` got 100 of the sample home's 165 retained topics and never the rest,
and no setting changes that. The demo's MQTT 5 rumqttd therefore sits behind
:class:`RetainingFront`, which keeps the retained messages itself (see there).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bridge.retained import topic_matches

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from iotcore import Broker

STARTUP_TIMEOUT = 10.0
"""Seconds a broker gets to start listening."""


class BrokerUnavailable(Exception):
    """The demo cannot start a broker (the message is one line for the user)."""


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on host:port."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str) -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pick_port(host: str, preferred: int) -> int:
    """``preferred`` when free, else any free port."""
    return preferred if port_is_free(host, preferred) else free_port(host)


def mosquitto_binary() -> str | None:
    """The Mosquitto broker's executable, when installed (Debian puts it in /usr/sbin)."""
    found = shutil.which("mosquitto")
    if found is None and Path("/usr/sbin/mosquitto").is_file():
        found = "/usr/sbin/mosquitto"
    return found


async def wait_listening(host: str, port: int, process: asyncio.subprocess.Process) -> None:
    """Return once host:port accepts connections; raise when ``process`` exits first."""
    async with asyncio.timeout(STARTUP_TIMEOUT):
        while True:
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(host, port)
                writer.close()
                return
            if process.returncode is not None:
                raise BrokerUnavailable(f"Mosquitto exited with code {process.returncode} at "
                                        f"start (port {port} taken?)")
            await asyncio.sleep(0.05)


class DemoBroker(Protocol):
    """What the demo needs to know about the broker it started."""

    name: str
    host: str
    port: int
    protocols: str
    """``MQTT 3.1.1 and 5`` or ``MQTT 5 only``."""
    client_flags: str
    """What mosquitto_sub/pub need to talk to it (``-V mqttv5 `` or nothing)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class MosquittoBroker:
    """A private Mosquitto process on ``host:port`` with a generated minimal config."""

    name = "Mosquitto"
    protocols = "MQTT 3.1.1 and 5"
    client_flags = ""

    def __init__(self, binary: str, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.binary = binary
        self.host = host
        self.port = port
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start it and wait until it accepts connections."""
        self._dir = tempfile.TemporaryDirectory(prefix="aqara-mqtt-demo-")
        conf = Path(self._dir.name) / "mosquitto.conf"
        conf.write_text(f"listener {self.port} {self.host}\nallow_anonymous true\n"
                        "persistence false\nlog_dest none\n")
        self._process = await asyncio.create_subprocess_exec(
            self.binary, "-c", str(conf), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            await wait_listening(self.host, self.port, self._process)
        except TimeoutError:
            await self.stop()
            raise BrokerUnavailable(f"Mosquitto did not listen on port {self.port} within "
                                    f"{STARTUP_TIMEOUT:.0f} s") from None
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop the process and remove its config."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


# max_outgoing_packet_count: how many messages a QoS 0 subscription is sent per read, and so
# also how many retained messages it gets at all when subscribing (the 3.1.1 test broker; the
# demo's MQTT 5 one has no retained messages in rumqttd, see RetainingFront).
# max_inflight_count: despite the name, how many packets rumqttd reads from a connection at a
# time; the in-flight window for QoS 1 and 2 is fixed at 100 in rumqttd 0.20.
RUMQTTD_ROUTER = """\
id = 0

[router]
id = 0
max_connections = 1000
max_outgoing_packet_count = 10000
max_segment_size = 104857600
max_segment_count = 10
"""

RUMQTTD_LISTENER = {
    "5": """
[v5.1]
name = "mqtt-5"
listen = "{host}:{port}"
next_connection_delay_ms = 1
    [v5.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = {max_payload}
    max_inflight_count = 100
""",
    "3.1.1": """
[v4.1]
name = "mqtt-3.1.1"
listen = "{host}:{port}"
next_connection_delay_ms = 1
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = {max_payload}
    max_inflight_count = 100
    dynamic_filters = true
""",
}


# ---- MQTT 5 packets, as much as RetainingFront reads --------------------------------------------

CONNECT, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK = 1, 3, 4, 5, 6, 7, 8, 9
UNSUBSCRIBE, DISCONNECT = 10, 14
MESSAGE_EXPIRY, SUBSCRIPTION_ID, WILL_DELAY = 0x02, 0x0B, 0x18
RECEIVE_MAXIMUM, TOPIC_ALIAS, MAXIMUM_PACKET_SIZE = 0x21, 0x23, 0x27

_BYTE, _TWO, _FOUR, _VARINT, _BYTES, _PAIR = range(6)
_PROPERTY_TYPES = {
    0x01: _BYTE, 0x02: _FOUR, 0x03: _BYTES, 0x08: _BYTES, 0x09: _BYTES, 0x0B: _VARINT,
    0x11: _FOUR, 0x12: _BYTES, 0x13: _TWO, 0x15: _BYTES, 0x16: _BYTES, 0x17: _BYTE,
    0x18: _FOUR, 0x19: _BYTE, 0x1A: _BYTES, 0x1C: _BYTES, 0x1F: _BYTES, 0x21: _TWO,
    0x22: _TWO, 0x23: _TWO, 0x24: _BYTE, 0x25: _BYTE, 0x26: _PAIR, 0x27: _FOUR, 0x28: _BYTE,
    0x29: _BYTE, 0x2A: _BYTE,
}
_FIXED_SIZES = {_BYTE: 1, _TWO: 2, _FOUR: 4}

Properties = list[tuple[int, bytes]]
"""MQTT 5 properties as (identifier, encoded value), in packet order."""


class MalformedPacket(ValueError):
    """A packet the front cannot read: it closes that connection."""


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """A variable byte integer at ``pos``; the value and the position after it."""
    value = 0
    for shift in (0, 7, 14, 21):
        if pos >= len(data):
            raise MalformedPacket("truncated variable byte integer")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
    raise MalformedPacket("variable byte integer longer than 4 bytes")


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def read_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    """A two-byte-length-prefixed string or binary at ``pos``."""
    end = pos + 2 + int.from_bytes(data[pos:pos + 2], "big")
    if pos + 2 > len(data) or end > len(data):
        raise MalformedPacket("truncated string")
    return data[pos + 2:end], end


def prefixed(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def read_properties(data: bytes, pos: int) -> tuple[Properties, int]:
    length, pos = read_varint(data, pos)
    end = pos + length
    if end > len(data):
        raise MalformedPacket("truncated properties")
    props: Properties = []
    while pos < end:
        ident, start = read_varint(data, pos)
        kind = _PROPERTY_TYPES.get(ident)
        if kind is None:
            raise MalformedPacket(f"unknown property {ident:#x}")
        if kind == _VARINT:
            _, pos = read_varint(data, start)
        elif kind == _BYTES:
            _, pos = read_bytes(data, start)
        elif kind == _PAIR:
            _, pos = read_bytes(data, read_bytes(data, start)[1])
        else:
            pos = start + _FIXED_SIZES[kind]
        props.append((ident, data[start:pos]))
    if pos != end:
        raise MalformedPacket("property overruns its block")
    return props, end


def encode_properties(props: Properties) -> bytes:
    body = b"".join(varint(ident) + value for ident, value in props)
    return varint(len(body)) + body


def property_int(props: Properties, ident: int) -> int | None:
    for key, value in props:
        if key == ident:
            return read_varint(value, 0)[0] if ident == SUBSCRIPTION_ID else int.from_bytes(
                value, "big")
    return None


def encode_packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes] | None:
    """(first byte, rest after the length) of the next packet; None at a clean end of stream."""
    first = await reader.read(1)
    if not first:
        return None
    length = 0
    for shift in (0, 7, 14, 21):
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            return first[0], await reader.readexactly(length)
    raise MalformedPacket("remaining length longer than 4 bytes")


# ---- retained messages kept in front of rumqttd -------------------------------------------------

FIRST_OWN_PKID = 1000
"""The front numbers its retained deliveries from here: rumqttd 0.20 uses 1 to 100 (MAX_PKID in
router/iobufs.rs), so the acknowledgements of the two never mix."""


@dataclass
class RetainedMessage:
    payload: bytes
    qos: int
    properties: Properties
    """As published, less topic alias, subscription identifiers and message expiry."""
    expires: float | None
    """Loop time at which the message expiry interval runs out, if it has one."""


@dataclass
class _Delivery:
    topic: bytes
    qos: int
    rest: bytes
    """Properties and payload: what follows the packet identifier."""


@dataclass(eq=False)
class FrontSession:
    """One client connection relayed to one rumqttd connection."""

    front: RetainingFront
    client_reader: asyncio.StreamReader
    client_writer: asyncio.StreamWriter
    broker_reader: asyncio.StreamReader | None = None
    broker_writer: asyncio.StreamWriter | None = None
    mqtt5: bool = True
    client_id: str = ""
    receive_maximum: int = 65535
    maximum_packet_size: int | None = None
    will: tuple[str, RetainedMessage, int] | None = None
    """(topic, message, will delay) of a will published with the retain flag."""
    clean_disconnect: bool = False
    aliases: dict[int, str] = field(default_factory=dict)
    subscribing: dict[int, tuple[list[tuple[str, int]], int | None]] = field(
        default_factory=dict)
    """SUBSCRIBE packet id -> ([(filter, options)], subscription identifier), until its SUBACK."""
    subscribed: set[str] = field(default_factory=set)
    own_inflight: set[int] = field(default_factory=set)
    broker_inflight: set[int] = field(default_factory=set)
    queue: deque[_Delivery] = field(default_factory=deque)
    next_pkid: int = FIRST_OWN_PKID

    async def run(self) -> None:
        tasks: list[asyncio.Task[None]] = []
        try:
            self.broker_reader, self.broker_writer = await asyncio.open_connection(
                self.front.broker_host, self.front.broker_port)
            tasks = [asyncio.create_task(self._pump(self._from_client)),
                     asyncio.create_task(self._pump(self._from_broker))]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except OSError:
            pass  # rumqttd is gone: the client sees its connection closed
        finally:
            for task in tasks:
                task.cancel()
            self.close()
            self.front.session_ended(self)

    def close(self) -> None:
        for writer in (self.client_writer, self.broker_writer):
            if writer is not None:
                writer.close()

    async def _pump(self, handle: Callable[[int, bytes], Awaitable[None]]) -> None:
        """Read packets from one side and hand them to ``handle`` until either side ends."""
        reader = self.client_reader if handle == self._from_client else self.broker_reader
        assert reader is not None
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            while (packet := await read_packet(reader)) is not None:
                await handle(*packet)

    async def _from_client(self, first: int, body: bytes) -> None:
        assert self.broker_writer is not None
        kind = first >> 4
        if not self.mqtt5:
            pass
        elif kind == CONNECT:
            body = self._connect(body)
        elif kind == PUBLISH:
            first = self._publish(first, body)
        elif kind in (PUBACK, PUBREC, PUBCOMP):
            if not self._acknowledged(kind, body):
                return  # one of ours: rumqttd never sent it
        elif kind == SUBSCRIBE:
            self._subscribe(body)
        elif kind == UNSUBSCRIBE:
            pos = read_properties(body, 2)[1]
            while pos < len(body):
                topic_filter, pos = read_bytes(body, pos)
                self.subscribed.discard(topic_filter.decode())
        elif kind == DISCONNECT:
            self.clean_disconnect = (body[0] if body else 0) != 0x04  # 4: with will message
        self.broker_writer.write(encode_packet(first, body))
        await self.broker_writer.drain()

    def _connect(self, body: bytes) -> bytes:
        """Note what the front needs and ask rumqttd not to retain the will."""
        name, pos = read_bytes(body, 0)
        if name != b"MQTT" or body[pos] != 5:
            self.mqtt5 = False  # rumqttd's MQTT 5 listener refuses it; just relay that
            return body
        flags_at = pos + 1
        flags = body[flags_at]
        props, pos = read_properties(body, flags_at + 3)
        self.receive_maximum = property_int(props, RECEIVE_MAXIMUM) or 65535
        self.maximum_packet_size = property_int(props, MAXIMUM_PACKET_SIZE)
        client_id, pos = read_bytes(body, pos)
        self.client_id = client_id.decode()
        self.front.session_started(self)
        if flags & 0x04 and flags & 0x20:  # a will, to be retained
            will_props, pos = read_properties(body, pos)
            topic, pos = read_bytes(body, pos)
            payload, pos = read_bytes(body, pos)
            delay = property_int(will_props, WILL_DELAY) or 0
            message = self.front.message((flags >> 3) & 3, [
                p for p in will_props if p[0] != WILL_DELAY], payload)
            self.will = (topic.decode(), message, delay)
        return body[:flags_at] + bytes([flags & ~0x20]) + body[flags_at + 1:]

    def _publish(self, first: int, body: bytes) -> int:
        """Keep a retained message; rumqttd gets it without the retain flag."""
        qos = (first >> 1) & 3
        topic_bytes, pos = read_bytes(body, 0)
        props, pos = read_properties(body, pos + (2 if qos else 0))
        topic = topic_bytes.decode()
        alias = property_int(props, TOPIC_ALIAS)
        if alias is not None:
            if topic:
                self.aliases[alias] = topic
            else:
                topic = self.aliases.get(alias, "")
        if first & 0x01 and topic:
            self.front.retain(topic, self.front.message(
                qos, [p for p in props if p[0] not in (TOPIC_ALIAS, SUBSCRIPTION_ID)],
                body[pos:]))
        return first & ~0x01

    def _acknowledged(self, kind: int, body: bytes) -> bool:
        """Track an acknowledgement; False when it is for one of the front's own messages."""
        pkid = int.from_bytes(body[:2], "big")
        failed = len(body) > 2 and body[2] >= 0x80
        done = kind != PUBREC or failed
        if pkid in self.own_inflight:
            if done:
                self.own_inflight.discard(pkid)
                self._send_queued()
            else:
                self.client_writer.write(encode_packet(PUBREL << 4 | 0x02, body[:2]))
            return False
        if done and pkid in self.broker_inflight:
            self.broker_inflight.discard(pkid)
            self._send_queued()
        return True

    def _subscribe(self, body: bytes) -> None:
        pkid = int.from_bytes(body[:2], "big")
        props, pos = read_properties(body, 2)
        entries = []
        while pos < len(body):
            topic_filter, pos = read_bytes(body, pos)
            entries.append((topic_filter.decode(), body[pos]))
            pos += 1
        self.subscribing[pkid] = (entries, property_int(props, SUBSCRIPTION_ID))

    async def _from_broker(self, first: int, body: bytes) -> None:
        kind = first >> 4
        if self.mqtt5 and kind == PUBLISH and first & 0x06:
            pkid = int.from_bytes(body[2 + int.from_bytes(body[:2], "big"):][:2], "big")
            if pkid in self.own_inflight:
                raise MalformedPacket(f"rumqttd used packet id {pkid}, which the front holds")
            self.broker_inflight.add(pkid)
        self.client_writer.write(encode_packet(first, body))
        if self.mqtt5 and kind == SUBACK:
            self._subscribed(body)
        await self.client_writer.drain()

    def _subscribed(self, body: bytes) -> None:
        """After the SUBACK: the retained messages each granted filter asks for (retain
        handling 0, or 1 for a new subscription; none for shared subscriptions)."""
        entries, subscription_id = self.subscribing.pop(int.from_bytes(body[:2], "big"),
                                                        ([], None))
        codes = body[read_properties(body, 2)[1]:]
        extra: Properties = [] if subscription_id is None else [
            (SUBSCRIPTION_ID, varint(subscription_id))]
        for (topic_filter, options), granted in zip(entries, codes, strict=False):
            if granted >= 0x80:
                continue
            new = topic_filter not in self.subscribed
            self.subscribed.add(topic_filter)
            handling = (options >> 4) & 0x03
            if topic_filter.startswith("$share/") or handling == 2 or (handling == 1 and not new):
                continue
            for topic, message, props in self.front.matching(topic_filter):
                self._deliver(_Delivery(topic.encode(), min(message.qos, granted),
                                        encode_properties(props + extra) + message.payload))
        self._send_queued()

    def _deliver(self, delivery: _Delivery) -> None:
        if delivery.qos:
            self.queue.append(delivery)
        else:
            self._write_publish(delivery, b"")

    def _send_queued(self) -> None:
        """Send queued QoS 1 and 2 messages as far as the client's receive maximum allows."""
        while self.queue and (len(self.own_inflight) + len(self.broker_inflight)
                              < self.receive_maximum):
            delivery = self.queue.popleft()
            while self.next_pkid in self.own_inflight:
                self._advance_pkid()
            pkid = self.next_pkid
            self._advance_pkid()
            if self._write_publish(delivery, pkid.to_bytes(2, "big")):
                self.own_inflight.add(pkid)

    def _advance_pkid(self) -> None:
        self.next_pkid = self.next_pkid + 1 if self.next_pkid < 0xFFFF else FIRST_OWN_PKID

    def _write_publish(self, delivery: _Delivery, pkid: bytes) -> bool:
        packet = encode_packet(PUBLISH << 4 | delivery.qos << 1 | 0x01,
                               prefixed(delivery.topic) + pkid + delivery.rest)
        if self.maximum_packet_size is not None and len(packet) > self.maximum_packet_size:
            return False  # MQTT 5: dropped, as the client cannot take it
        self.client_writer.write(packet)
        return True


class RetainingFront:
    """MQTT 5 in front of rumqttd, keeping the retained messages so that a subscription gets all
    it matches, at its QoS (see the module docstring for what rumqttd does instead).

    It relays every packet between a client and a rumqttd connection of its own, and reads few:
    PUBLISH from a client (a retained message is kept here and passed on without the retain flag,
    as rumqttd would forward it anyway, so rumqttd keeps none); CONNECT (a retained will, kept
    here when the connection ends without a normal DISCONNECT); SUBSCRIBE and its SUBACK (after
    which it sends the retained messages that match, flagged retained, at min(published, granted)
    QoS, with the subscription identifier, within the client's receive maximum, numbered from
    :data:`FIRST_OWN_PKID` on); and the client's PUBACK/PUBREC/PUBCOMP for those, which it
    answers and does not pass on. Anything else, and clients that are not MQTT 5, pass as they
    are. It runs on its own thread and event loop, so it does not depend on the caller's loop.
    """

    def __init__(self, host: str, port: int, broker_host: str, broker_port: int) -> None:
        self.host = host
        self.port = port
        self.broker_host = broker_host
        self.broker_port = broker_port
        self.retained: dict[str, RetainedMessage] = {}
        self._sessions: dict[FrontSession, asyncio.Task[None] | None] = {}
        self._pending_wills: dict[str, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen on host:port (blocking; raises OSError when the port is taken)."""
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(ready),),
                                        name="aqara-mqtt-demo-broker", daemon=True)
        self._thread.start()
        ready.result(STARTUP_TIMEOUT)

    def stop(self) -> None:
        """Close the listener and every connection (blocking)."""
        loop, stopping, thread = self._loop, self._stopping, self._thread
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # its loop has ended already
                loop.call_soon_threadsafe(stopping.set)
        if thread is not None:
            thread.join(5)
        self._loop = self._stopping = self._thread = None

    async def _serve(self, ready: concurrent.futures.Future[None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            server = await asyncio.start_server(self._connected, self.host, self.port)
        except OSError as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        async with server:
            await self._stopping.wait()
            server.close()
            for session in self._sessions:
                session.close()
            tasks = [task for task in self._sessions.values() if task is not None]
            if tasks:
                await asyncio.wait(tasks, timeout=5)

    async def _connected(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        session = FrontSession(self, reader, writer)
        self._sessions[session] = asyncio.current_task()
        await session.run()

    def message(self, qos: int, props: Properties, payload: bytes) -> RetainedMessage:
        expiry = property_int(props, MESSAGE_EXPIRY)
        assert self._loop is not None
        return RetainedMessage(payload, qos, [p for p in props if p[0] != MESSAGE_EXPIRY],
                               None if expiry is None else self._loop.time() + expiry)

    def retain(self, topic: str, message: RetainedMessage) -> None:
        """Keep ``message`` as the retained one of ``topic`` (an empty payload clears it)."""
        if message.payload:
            self.retained[topic] = message
        else:
            self.retained.pop(topic, None)

    def matching(self, topic_filter: str) -> list[tuple[str, RetainedMessage, Properties]]:
        """(topic, message, properties to send) of the unexpired retained messages matching."""
        assert self._loop is not None
        now = self._loop.time()
        found = []
        for topic, message in list(self.retained.items()):
            if not topic_matches(topic_filter, topic):
                continue
            props = message.properties
            if message.expires is not None:
                left = int(message.expires - now)
                if left <= 0:
                    del self.retained[topic]
                    continue
                props = [(MESSAGE_EXPIRY, left.to_bytes(4, "big")), *props]
            found.append((topic, message, props))
        return found

    def session_started(self, session: FrontSession) -> None:
        """A client connected: a delayed will of an earlier connection of it is void."""
        pending = self._pending_wills.pop(session.client_id, None)
        if pending is not None:
            pending.cancel()

    def session_ended(self, session: FrontSession) -> None:
        """Keep the retained will of a connection that ended without a normal DISCONNECT
        (rumqttd publishes it live), after its will delay."""
        self._sessions.pop(session, None)
        if session.will is None or session.clean_disconnect:
            return
        topic, message, delay = session.will
        if not delay:
            self.retain(topic, message)
            return
        assert self._loop is not None
        self._pending_wills[session.client_id] = self._loop.call_later(
            delay, self._delayed_will, session.client_id, topic, message)

    def _delayed_will(self, client_id: str, topic: str, message: RetainedMessage) -> None:
        self._pending_wills.pop(client_id, None)
        self.retain(topic, message)


class EmbeddedBroker:
    """rumqttd (through iotcore) on ``host:port``, speaking one MQTT ``version``: "5" for the
    demo, "3.1.1" (the default) as a 3.1.1-only broker for tests.

    iotcore runs rumqttd in a child process that exits with ours, because rumqttd has no
    shutdown call of its own. For MQTT 5, rumqttd listens on another loopback port behind a
    :class:`RetainingFront` on ``host:port``, so that subscribers get every retained message;
    the 3.1.1 one is rumqttd alone (QoS 1 and 2 subscriptions get at most 100 retained
    messages)."""

    name = "built-in rumqttd broker"

    def __init__(self, host: str = "127.0.0.1", port: int = 1883,
                 version: str = "3.1.1") -> None:
        self.host = host
        self.port = port
        self.version = version
        self.protocols = f"MQTT {version} only"
        self.client_flags = "-V mqttv5 " if version == "5" else ""
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._broker: Broker | None = None
        self._front: RetainingFront | None = None

    async def start(self) -> None:
        """Start listening."""
        try:
            from iotcore import Broker
        except ImportError:
            raise BrokerUnavailable(
                "no MQTT broker for the demo: install Mosquitto (Debian: apt install mosquitto) "
                "or the built-in one with pip install '.[demo]', or pass --mqtt URL") from None
        self._dir = tempfile.TemporaryDirectory(prefix="aqara-mqtt-demo-")
        config = Path(self._dir.name) / "rumqttd.toml"
        front = RetainingFront(self.host, self.port, self.host, free_port(self.host)) \
            if self.version == "5" else None
        listener = RUMQTTD_LISTENER[self.version].format(
            host=self.host, port=self.port if front is None else front.broker_port,
            max_payload=64 << 20)
        config.write_text(RUMQTTD_ROUTER + listener)
        broker = Broker(config_path=str(config))
        self._broker = broker
        try:
            await asyncio.to_thread(broker.start, STARTUP_TIMEOUT)
            if front is not None:
                self._front = front
                await asyncio.to_thread(front.start)
        except (OSError, RuntimeError) as exc:
            await self.stop()
            raise BrokerUnavailable(f"the built-in broker did not start: {exc}") from None

    async def stop(self) -> None:
        """Stop the broker process and release the port."""
        front, self._front = self._front, None
        if front is not None:
            await asyncio.to_thread(front.stop)
        broker, self._broker = self._broker, None
        if broker is not None:
            await asyncio.to_thread(broker.stop)
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


def demo_broker(kind: str, host: str, preferred: int) -> DemoBroker:
    """The broker the demo starts: ``mosquitto``, ``embedded``, or ``auto`` (Mosquitto when
    installed, else the embedded one), on ``preferred`` or the next free port."""
    binary = mosquitto_binary()
    if kind == "mosquitto" and binary is None:
        raise BrokerUnavailable("--broker mosquitto: Mosquitto is not installed "
                                "(Debian: apt install mosquitto)")
    port = pick_port(host, preferred)
    if binary is not None and kind != "embedded":
        return MosquittoBroker(binary, host, port)
    return EmbeddedBroker(host, port, version="5")
