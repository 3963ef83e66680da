"""The MQTT client: paho-mqtt driven by the asyncio loop (no thread, no await per publish).

Publishing is synchronous and never blocks: paho queues the packet, and what one callback of the
loop published is written in one ``send()`` right after it (or when a full socket is writable).
The in-flight window is ours, not paho's: at most :attr:`MqttLink.window` messages are
unacknowledged, so paho's own queue stays empty (each PUBACK would walk it). Beyond the window,
publications are parked (:mod:`bridge.parking`): a retained topic keeps its latest value (the
broker still converges to the current state, and a device document is built only when it is
sent), non-retained ones are bounded (the oldest are dropped and counted), and all leave in
publication order. While disconnected nothing is queued in paho but parked the same way (so a
retained clear made meanwhile still reaches a persistent broker); the ``on_connected`` hook
republishes the full state after every (re)connect, and what the broker never acknowledged is
sent again first.

Connecting follows :mod:`bridge.connect_policy`: several brokers in order (failover), a backoff
only after a whole round failed and reset only by a connection that lasted, MQTT 5 with an
immediate 3.1.1 attempt when a broker refuses, hangs up on or ignores it, and topics a broker
drops the connection for blocked once the drop repeats (:attr:`MqttLink.blocked`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import paho.mqtt.client as paho
from paho.mqtt import _packet
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from bridge.connect_policy import (
    QOS0_RING,
    STABLE_AFTER,
    Blocker,
    Outcome,
    Packet,
    Rotation,
    fallback,
    fallback_text,
    unacknowledged,
    where,
)
from bridge.logsetup import get_logger
from bridge.messages import IncomingMessage, Payload, PublishProperties
from bridge.parking import ParkingLine, Unacknowledged
from bridge.ratelimit import Throttle
from bridge.retained import filter_matches
from bridge.trim import release_free_memory

log = get_logger("bridge.mqtt")

INFLIGHT_WINDOW = 1000
"""Messages handed to paho and not yet acknowledged, at most (``mqtt.max_queued`` can only lower
it). What exceeds it is parked by us, never queued in paho: paho would walk its queue on every
acknowledgement, and keeps a message object, a message-info object and a condition per entry."""

TRIM_AFTER = 10_000
"""Parked messages at the high water of a burst above which, once drained, the freed heap is
given back to the OS (a large home's start-up or republish)."""

_Parked = Payload | tuple[Payload, int, Properties | None]
"""A parked retained message: its payload alone when QoS and properties are the defaults."""

DENIED_REPORT_INTERVAL = 60.0
"""Seconds between two reports of refused publishes to the same topic."""

CONNACK_TIMEOUT = 10.0
"""Seconds to wait for the broker's answer to CONNECT (an MQTT 5 one that 3.1.1 would follow
gets half: see :meth:`MqttLink._connack_timeout`)."""


_PASSING_SUBACK_REFUSALS = frozenset({
    0x80,  # unspecified error (and the only failure code of MQTT 3.1.1)
    0x83,  # implementation specific error
    0x97,  # quota exceeded
})
"""SUBACK reasons worth subscribing again for; the others (not authorized, invalid filter,
wildcards or shared subscriptions not supported) will not change."""


class TlsFileError(Exception):
    """A TLS file of the config cannot be used; the message names it."""


def tls_context(s: MqttSettings) -> ssl.SSLContext:
    """The client's TLS context; TlsFileError names the CA, certificate or key that failed."""
    try:
        context = ssl.create_default_context(cafile=s.tls_ca)
    except (OSError, ssl.SSLError) as exc:
        raise TlsFileError(f"TLS: cannot use the CA file {s.tls_ca}: "
                           f"{getattr(exc, 'reason', None) or exc.strerror or exc}") from None
    if s.tls_cert:
        try:
            context.load_cert_chain(s.tls_cert, s.tls_key)
        except (OSError, ssl.SSLError) as exc:
            files = s.tls_cert if not s.tls_key else f"{s.tls_cert} / key {s.tls_key}"
            raise TlsFileError(f"TLS: cannot use the client certificate {files}: "
                               f"{getattr(exc, 'reason', None) or exc.strerror or exc}") from None
    if s.tls_insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """Everything needed to reach the broker (built from the ``mqtt:`` config section)."""

    host: str
    port: int
    client_id: str
    will_topic: str
    username: str | None = None
    password: str | None = None
    use_tls: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_insecure: bool = False
    version: str = "5"
    keepalive: int = 60
    qos: int = 1
    max_queued: int = 10_000
    reconnect_max_delay: float = 30.0
    failover: tuple[tuple[str, int], ...] = ()
    """Further brokers ``(host, port)`` tried after ``host:port``, in order (the nodes of a
    cluster, or a primary and a fallback), with the same credentials and TLS settings."""
    stable_after: float = STABLE_AFTER
    """Seconds a connection must last to reset the reconnect backoff (tests lower it)."""
    will_payload: str = "offline"
    stop_payload: str = "offline"
    """Published on the will topic by a clean :meth:`MqttLink.stop`."""

    @property
    def addresses(self) -> tuple[tuple[str, int], ...]:
        """Every broker, in the order tried: ``(host, port)`` first, then :attr:`failover`."""
        return ((self.host, self.port), *self.failover)


class _Attempt(NamedTuple):
    """How one CONNECT ended (see :data:`bridge.connect_policy.Outcome`)."""

    outcome: Outcome
    text: str = ""
    code: int = 0
    """The CONNACK's reason code, when it refused."""


class _Sent(NamedTuple):
    """A publish kept until the broker acknowledged it, or parked until it can be sent."""

    topic: str
    data: bytes
    qos: int
    props: Properties | None
    retain: bool = False
    resent: bool = False
    """Already sent once on a connection that was lost before the acknowledgement."""
    on_ack: Callable[[], None] | None = None
    """Called at the acknowledgement (:meth:`MqttLink.publish_tracked`); lost with the
    connection, never sent again."""


class _Client(paho.Client):
    """paho's client with batched socket I/O and lean QoS 1 publishing: paho's own work per
    message (objects per publish and per PUBACK, a syscall per packet) was over half of the
    bridge's CPU at capacity. The protocol, the connection and the session stay paho's.

    This relies on private methods of paho 2.2 (pinned ``<2.3`` in pyproject.toml;
    tests/unit/test_paho_seam.py fails when they change, tests/integration/test_mqtt_batching.py
    checks the behaviour against Mosquitto):

    - ``_sock_send``: paho sends each packet with its own ``send()``; here it is appended to a
      buffer that ``_packet_write`` sends at once after paho has handed over every queued
      packet (``loop_write`` runs right after the callback that published, see
      :meth:`MqttLink._write_now`, and when a full socket is writable again). A DISCONNECT is
      written through, as paho closes the socket right after handing it over.
    - ``_sock_recv``: paho reads a PUBACK with three ``recv()`` calls (command, length, body);
      here one ``recv()`` fills a buffer they are served from (:meth:`buffered` tells the
      link's reader to go on while it holds data, which the socket no longer shows).
    - :meth:`publish_qos1` (``_mid_generate``, ``_send_publish``): a QoS 1 publish without the
      ``MQTTMessage``, ``MQTTMessageInfo`` and ``threading.Condition`` paho keeps per message,
      encoded straight into the write buffer while paho's ``_out_packet`` queue is empty;
      ``_handle_pubackcomp`` hands its PUBACK to ``on_publish`` without paho's decoder (a
      ``ReasonCode`` and a ``Properties`` object of 27 names per acknowledgement).
    - ``_packet_read``: between packets, the run of plain PUBACKs at the front of the read
      buffer is acknowledged in one call; paho reads everything else (tests/unit/
      test_mqtt_wire.py holds both shortcuts to paho's own encoder and decoder, byte for byte).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wbuf = bytearray()
        self._retry = 0
        """Bytes a TLS ``send`` refused with want-write: OpenSSL wants them offered again."""
        self._rbuf = b""
        self._rpos = 0
        self.sends = 0
        """``send()`` calls made (for tests)."""

    def _sock_send(self, buf: bytes | bytearray) -> int:
        if self._sock is None:
            raise ConnectionError("self._sock is None")
        disconnect = buf[0] & 0xF0 == paho.DISCONNECT
        if disconnect and self._flush() == paho.MQTT_ERR_SUCCESS:
            return super()._sock_send(buf)
        if disconnect or len(self._wbuf) >= WRITE_BUFFER_LIMIT:
            self._call_socket_register_write()  # paho keeps the packet and tries again
            raise BlockingIOError
        self._wbuf += buf
        return len(buf)

    def _packet_write(self) -> MQTTErrorCode:
        rc: MQTTErrorCode = super()._packet_write()
        if rc != paho.MQTT_ERR_SUCCESS and rc != paho.MQTT_ERR_AGAIN:
            return rc
        flushed = self._flush()
        return rc if flushed == paho.MQTT_ERR_SUCCESS else flushed

    def _flush(self) -> MQTTErrorCode:
        """Send the buffered packets (as much as the socket takes)."""
        buf, sock = self._wbuf, self._sock
        while buf and sock is not None:
            size = self._retry or len(buf)
            try:
                self.sends += 1
                sent = sock.send(buf if size == len(buf) else buf[:size])
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                self._retry = size if isinstance(sock, ssl.SSLSocket) else 0
                return paho.MQTT_ERR_AGAIN
            except OSError as err:
                self._easy_log(paho.MQTT_LOG_ERR, "failed to send on socket: %s", err)
                return paho.MQTT_ERR_CONN_LOST
            self._retry = 0
            self._last_msg_out = paho.time_func()  # paho's keep-alive clock
            del buf[:sent]
        return paho.MQTT_ERR_SUCCESS

    def want_write(self) -> bool:
        return bool(self._wbuf) or bool(super().want_write())

    def _sock_recv(self, bufsize: int) -> bytes:
        pos = self._rpos
        if pos >= len(self._rbuf):
            if self._sock is None:
                raise ConnectionError("self._sock is None")
            try:
                data = self._sock.recv(READ_CHUNK)
            except ssl.SSLWantReadError as err:
                raise BlockingIOError from err
            except ssl.SSLWantWriteError as err:
                self._call_socket_register_write()
                raise BlockingIOError from err
            if len(data) <= bufsize:  # the end of a packet, or the connection's (b"")
                self._rbuf, self._rpos = b"", 0
                return bytes(data)
            self._rbuf, pos = data, 0
        end = pos + bufsize
        self._rpos = end
        return self._rbuf[pos:end]

    def buffered(self) -> bool:
        """Received bytes not yet handled (in this buffer, or decrypted in the TLS layer)."""
        if self._rpos < len(self._rbuf):
            return True
        pending = getattr(self._sock, "pending", None)
        return bool(pending()) if pending is not None else False

    def publish_qos1(self, topic: str, payload: bytes, retain: bool,
                     properties: Properties | None) -> int:
        """paho's ``publish()`` at QoS 1 without what it makes per message and keeps until the
        PUBACK (an ``MQTTMessage``, an ``MQTTMessageInfo`` with a ``threading.Condition``):
        the link keeps its own table of what is in flight. Returns the packet id; the PUBACK
        calls ``on_publish`` as for paho's own messages (see :meth:`_handle_pubackcomp`).

        The packet goes straight into the write buffer (paho's packet dict, queue and
        ``_sock_send`` per message were a third of publishing), unless paho still holds packets
        of its own: then it queues behind them, so the order on the wire is the order of calls.
        """
        topic_bytes = topic.encode()
        self._raise_for_invalid_topic(topic_bytes)
        mid: int = self._mid_generate()
        buf = self._wbuf
        if self._out_packet or self._sock is None or len(buf) >= WRITE_BUFFER_LIMIT:
            self._send_publish(mid, topic_bytes, payload, 1, retain, False, None, properties)
            return mid
        packed = b"" if self._protocol != paho.MQTTv5 else (
            b"\0" if properties is None else properties.pack())  # type: ignore[no-untyped-call]
        remaining = 4 + len(topic_bytes) + len(packed) + len(payload)
        buf.append(0x32 | retain)  # PUBLISH, QoS 1
        while remaining > 0x7F:  # the variable-length "remaining length"
            buf.append(remaining & 0x7F | 0x80)
            remaining >>= 7
        buf.append(remaining)
        buf += len(topic_bytes).to_bytes(2, "big")
        buf += topic_bytes
        buf += mid.to_bytes(2, "big")
        buf += packed
        buf += payload
        return mid

    def _packet_read(self) -> MQTTErrorCode:
        if self._in_packet["command"] == 0 and self._take_pubacks():
            return paho.MQTT_ERR_SUCCESS
        rc: MQTTErrorCode = super()._packet_read()
        return rc

    def _take_pubacks(self) -> bool:
        """Acknowledge the run of plain PUBACKs at the front of the read buffer at once (paho
        reads a packet in three steps, each a call and a slice). Plain: for a message of
        :meth:`publish_qos1`, reason "success" or "no matching subscribers", no properties;
        anything else stops the run and is read by paho."""
        buf, pos = self._rbuf, self._rpos
        end, start = len(buf), pos
        out = self._out_messages
        while pos + 4 <= end and buf[pos] == 0x40:
            length = buf[pos + 1]
            if length == 2:
                reason = 0
            elif length == 3 and pos + 5 <= end and buf[pos + 4] in (0, 0x10):
                reason = buf[pos + 4]
            else:
                break
            mid = buf[pos + 2] << 8 | buf[pos + 3]
            if mid in out:  # sent with paho's publish(): paho's own bookkeeping
                break
            pos += 2 + length
            self._rpos = pos
            self._acknowledged(mid, _puback_reason(reason), _NO_PUBACK_PROPERTIES)
        if pos == start:
            return False
        self._last_bytes_received = paho.time_func()
        return True

    def _handle_pubackcomp(self, cmd: Literal["PUBACK", "PUBCOMP"]) -> MQTTErrorCode:
        packet = self._in_packet["packet"]
        if cmd != "PUBACK" or len(packet) < 2:
            return super()._handle_pubackcomp(cmd)
        mid = packet[0] << 8 | packet[1]
        with self._out_message_mutex:
            if mid in self._out_messages:  # sent with paho's publish()
                return super()._handle_pubackcomp(cmd)
        # one of publish_qos1's. The common answer, a reason below 0x80 (Mosquitto: 0 or 0x10
        # "no matching subscribers") and no properties, skips paho's decoder, which builds a
        # ReasonCode and a Properties object (a dict of 27 names) per acknowledgement.
        size = len(packet)
        if size <= 3 or (size == 4 and not packet[3]):
            reason = _puback_reason(packet[2] if size > 2 else 0)
            properties = _NO_PUBACK_PROPERTIES
        else:
            decoded = _packet.decode_puback(self._in_packet["command"], packet, self._protocol)
            reason, properties = decoded.reason, decoded.properties
        self._acknowledged(mid, reason, properties)
        return paho.MQTT_ERR_SUCCESS

    def _acknowledged(self, mid: int, reason: ReasonCode, properties: Properties) -> None:
        """Hand a PUBACK of :meth:`publish_qos1`'s to ``on_publish``, as paho would."""
        on_publish: Any = self.on_publish  # the VERSION2 signature (the link's only use)
        if on_publish is not None:
            on_publish(self, self._userdata, mid, reason, properties)


@functools.cache
def _puback_reason(value: int) -> ReasonCode:
    """paho's reason code object for a PUBACK reason, one per value (MalformedPacket, as
    paho's decoder raises, for a value MQTT 5 does not define)."""
    try:
        return ReasonCode(PacketTypes.PUBACK, identifier=value)
    except KeyError:
        raise MalformedPacket(f"PUBACK reason code {value:#x} is not defined") from None


_NO_PUBACK_PROPERTIES = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]

WRITE_BUFFER_LIMIT = 1 << 20
"""Bytes buffered for the broker at most; beyond them paho keeps its packets queued."""

READ_CHUNK = 1 << 16
"""Bytes asked of the socket per ``recv()``."""


class MqttLink:
    """One connection to the broker, kept up until :meth:`stop`."""

    def __init__(
        self,
        settings: MqttSettings,
        subscriptions: list[str],
        on_message: Callable[[IncomingMessage], None],
        on_connected: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.subscriptions = subscriptions
        self.on_message = on_message
        self.on_connected = on_connected
        self.version = settings.version
        self.connected = False
        self.connections = 0
        """Successful connects since start (the first included)."""
        self.published = 0
        self.acknowledged = 0
        self.denied = 0
        """Publishes the broker refused (MQTT 5 reason codes >= 0x80), since start."""
        self.last_denied: dict[str, str] | None = None
        self.on_denied: Callable[[str, str], None] | None = None
        """Called with (topic, reason) for each reported (rate-limited) refused publish."""
        self._denied_throttle = Throttle(DENIED_REPORT_INTERVAL)
        self._in_flight: dict[int, _Sent] = {}
        """QoS>0 publishes awaiting their acknowledgement, by packet id."""
        self.window = max(1, min(settings.max_queued, INFLIGHT_WINDOW))
        """Unacknowledged messages at most; beyond them publications are parked."""
        self._parked: ParkingLine[_Parked, _Sent] = ParkingLine(other_limit=1000)
        """What waits, in publication order (a large home's burst adds no small object per
        message but the payload; the heap it leaves is returned)."""
        self._flush_scheduled = False
        self._write_soon = False
        """A :meth:`_write_now` is scheduled."""
        self._filters: set[str] = set()
        """Every filter subscribed on this connection (an unsubscribed one still counts: what
        the broker sent before the UNSUBSCRIBE may arrive after it)."""
        self._leak_reported = False
        self._held: str | None = None
        """While set, only topics under this prefix are published (:meth:`hold`)."""
        self.fence: Callable[[], bool] | None = None
        """When set and False, :meth:`publish` drops the message: a failover member that is no
        longer active sends nothing (see :mod:`bridge.lease_keeper`)."""
        self.fenced = 0
        """Publishes dropped by :attr:`fence`."""
        self._room = asyncio.Event()
        self._room.set()
        self._client: _Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._disconnected = asyncio.Event()
        self._up = asyncio.Event()
        self._connack: asyncio.Future[tuple[int, str]] | None = None
        self._stopping = False
        self._fallback_logged = False
        self._socket_error: str | None = None
        """paho's last socket error text during the handshake (it keeps no exception)."""
        self._rotation = Rotation(settings.addresses, settings.reconnect_max_delay,
                                  settings.stable_after)
        self.broker_index = 0
        """Which of :attr:`MqttSettings.addresses` is in use (or was tried last)."""
        self.fallback_reason: str | None = None
        """Why this connection is MQTT 3.1.1 although 5 is configured (None: it is not)."""
        self.on_blocked: Callable[[str, str], None] | None = None
        """Called once per new block with (an example topic, the reason: a sentence naming the
        likely cause and what is no longer sent); without it the block is logged."""
        self.blocked_publishes = 0
        """Publishes dropped, never sent, because a block matched them (since start)."""
        self._blocker = Blocker(settings.will_topic)
        self._qos0: deque[tuple[int, Packet]] = deque(maxlen=QOS0_RING)
        """This connection's latest QoS 0 publishes, by packet id (QoS>0: :attr:`_in_flight`)."""
        self._requests: dict[int, list[str]] = {}
        self._no_local: dict[int, bool] = {}
        self._sub_qos: dict[int, int] = {}
        self._suback_delay: dict[str, float] = {}
        """Filter → seconds before its next retry after a passing SUBACK refusal."""
        self._suback_throttle = Throttle(DENIED_REPORT_INTERVAL)
        """SUBSCRIBE / UNSUBSCRIBE filters awaiting their acknowledgement, by packet id."""
        self._said: int | None = None
        """The reason code of the broker's MQTT 5 DISCONNECT that ended the connection."""

    # ---- publishing (hot path) ------------------------------------------------------------

    @property
    def outstanding(self) -> int:
        """Messages handed to paho and not yet acknowledged (or written, for QoS 0)."""
        return self.published - self.acknowledged

    def publish(
        self,
        topic: str,
        payload: Payload,
        retain: bool = False,
        qos: int | None = None,
        properties: PublishProperties | None = None,
    ) -> None:
        """Send or park a message; never blocks and never awaits."""
        if self.fence is not None and not self.fence():
            self.fenced += 1
            return
        props = None if properties is None else paho_properties(properties)
        level = self.settings.qos if qos is None else qos
        client = self._client
        if not self.connected or client is None or (
                self._held is not None and not topic.startswith(self._held)):
            if retain:  # latest per topic: a clear must reach a broker that persisted the value
                self._park_retained(topic, payload, level, props)
            else:
                self._parked.park_other(_Sent(topic, _encode(payload), level, props))
            return
        if (self.published - self.acknowledged >= self.window or self.parked) and (
                self._held is None):  # a held link's exempt topics go past what waits
            if retain:
                self._park_retained(topic, payload, level, props)
            else:
                self._parked.park_other(_Sent(topic, _encode(payload), level, props))
            if self.parked > self.window:
                self._room.clear()
            return
        self._send(client, _Sent(topic, _encode(payload), level, props, retain))

    def publish_tracked(self, topic: str, payload: bytes, on_ack: Callable[[], None]) -> None:
        """A retained QoS 1 publish past :attr:`fence` and :meth:`hold` (the failover lease's
        own records); ``on_ack`` at the broker's acknowledgement. Dropped when disconnected:
        the lease sends a fresh record at the next connect."""
        client = self._client
        if self.connected and client is not None:
            self._send(client, _Sent(topic, payload, 1, None, True, on_ack=on_ack))

    def discard(self) -> None:
        """Forget every parked and unacknowledged message (a failover member that stepped down
        must not send what it prepared while it was active)."""
        self.fenced += self._parked.clear() + len(self._in_flight)
        self._in_flight.clear()
        self._room.set()

    def _send(self, client: _Client, sent: _Sent) -> None:
        self.published += 1
        if sent.qos == 1:
            mid = client.publish_qos1(sent.topic, sent.data, sent.retain, sent.props)
        else:
            mid = client.publish(sent.topic, sent.data, sent.qos, sent.retain, sent.props).mid
        if sent.qos:  # kept to name a refused topic and to resend what a hang-up lost
            self._in_flight[mid] = sent
        else:  # kept to name the topic if the broker drops the connection for it
            self._qos0.append((mid, Packet(sent.topic, len(sent.data))))
        if not self._write_soon and self._loop is not None:
            self._write_soon = True
            self._loop.call_soon(self._write_now, client)

    def _send_unless_blocked(self, client: _Client, sent: _Sent) -> None:
        """:meth:`_send` once a block exists: it replaces it on the instance (see
        :meth:`_block`), so that until then sending does not pay for the test."""
        if self._blocker.blocks_topic(sent.topic, len(sent.data)):
            self.blocked_publishes += 1
            return
        MqttLink._send(self, client, sent)

    def _write_now(self, client: _Client) -> None:
        """Write what this loop turn published right after the callback that published it,
        before the loop polls again: waiting for the socket's writable event would let a hub
        reader's next batch (queued before that event) run first."""
        self._write_soon = False
        if client is self._client and client.socket() is not None:
            self._guard(client.loop_write)

    def _park_retained(self, topic: str, payload: Payload, qos: int,
                       props: Properties | None) -> None:
        """Park a retained message: its latest value, after everything parked before it."""
        item = payload if qos == self.settings.qos and props is None else (payload, qos, props)
        self._parked.park_retained(topic, item)

    def _on_publish(self, _c: paho.Client, _u: Any, mid: int, reason: Any = None,
                    _p: Any = None) -> None:
        self.acknowledged += 1
        sent = self._in_flight.pop(mid, None)
        if sent is not None and getattr(reason, "value", 0) >= 0x80:
            self._denied(sent.topic, str(reason))
        elif sent is not None and sent.on_ack is not None:
            sent.on_ack()
        # refill when half the window is free: parked messages go out in batches
        if (
            not self._flush_scheduled
            and self.parked
            and self.published - self.acknowledged <= self.window // 2
            and self._loop is not None
        ):
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_parked)

    def _flush_parked(self) -> None:
        self._flush_scheduled = False
        client = self._client
        if not self.connected or client is None or self._held is not None:
            return
        default_qos = self.settings.qos

        def send_retained(topic: str, item: _Parked) -> None:
            payload, qos, props = item if isinstance(item, tuple) else (item, default_qos, None)
            self._send(client, _Sent(topic, _encode(payload), qos, props, True))

        self._parked.drain(self.window - self.outstanding, send_retained,
                           functools.partial(self._send, client))
        if self._parked.take_high_water() >= TRIM_AFTER:  # a drained burst's heap goes back
            release_free_memory()
        if self.parked <= self.window:
            self._room.set()

    async def room(self) -> None:
        """Wait while more than a window of messages is parked on a live connection.

        Hub readers await this between batches: when the broker is the bottleneck the hubs
        are slowed by TCP flow control instead of the bridge spending its time on input it
        cannot send (output stays at capacity under overload). Returns at once when
        disconnected: retained state is then republished whole, nothing piles up."""
        while self.connected and not self._room.is_set():
            await self._room.wait()

    def _denied(self, topic: str, reason: str) -> None:
        """The broker refused a publish (PUBACK/PUBCOMP reason >= 0x80, e.g. an ACL): count it,
        and report it, at most once a minute per topic."""
        self.denied += 1
        self.last_denied = {"topic": topic, "reason": reason}
        held = self._denied_throttle.allow(topic)
        if held is None:
            return
        if self.on_denied is not None:
            self.on_denied(topic, reason)
        else:
            log.warning("the broker refused a publish", topic=topic, reason=reason,
                        refused_total=self.denied)

    @property
    def parked(self) -> int:
        """Messages waiting for the broker to catch up (bounded)."""
        return len(self._parked)

    @property
    def parked_peak(self) -> int:
        """The most messages parked at once, since start."""
        return self._parked.peak

    @property
    def dropped(self) -> int:
        """Non-retained messages dropped because too many waited."""
        return self._parked.dropped

    # ---- connection lifecycle -------------------------------------------------------------

    async def run(self) -> None:
        """Connect, and reconnect, until cancelled or stopped: the brokers in order, the next
        one at once after a failure, the backoff (with jitter) only after a whole round failed
        and reset only by a connection that lasted (see :class:`Rotation`)."""
        loop = self._loop = asyncio.get_running_loop()
        rotation = self._rotation
        misc = asyncio.create_task(self._misc_loop())
        try:
            while not self._stopping:
                self.broker_index = rotation.index
                reason = await self._connect_once()
                if reason is None:
                    rotation.connected(loop.time())
                    await self._disconnected.wait()
                    if self._stopping:
                        break
                    now = loop.time()
                    self._judge_drop(rotation.stable(now))
                    log.warning("mqtt connection lost; reconnecting", broker=self.broker)
                    wait = rotation.lost(now)
                else:
                    log.error("mqtt connection failed", broker=self.broker, reason=reason)
                    wait = rotation.failed()
                if wait > 0:
                    await asyncio.sleep(wait)
        finally:
            misc.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await misc
            self._teardown()

    async def probe(self) -> str | None:
        """Try to connect (for ``check``): the brokers in order, None on the first that accepts
        us, else why none did (each reason after its broker when there are several)."""
        self._loop = asyncio.get_running_loop()
        reasons: list[str] = []
        try:
            for index in range(len(self._rotation.addresses)):
                self.broker_index = self._rotation.index = index
                reason = await self._connect_once()
                if reason is None:
                    return None
                reasons.append(reason)
                self._teardown()
        finally:
            if self.connected and self._client is not None:
                self._client.disconnect()
            self._teardown()
        if len(reasons) == 1:
            return reasons[0]
        return "; ".join(f"{where(address)}: {reason}"
                         for address, reason in zip(self._rotation.addresses, reasons, strict=True))

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the first successful CONNACK (for tests and ``check``)."""
        async with asyncio.timeout(timeout):
            await self._up.wait()

    def hold(self, prefix: str | None) -> None:
        """Park every publish but those to topics under ``prefix``, as while disconnected
        (the core learns who owns its base topic before it publishes); None: publish again,
        what was parked first."""
        self._held = prefix
        if prefix is None and self.parked and self.connected and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_parked)

    async def stop(self, publish_state: bool = True) -> None:
        """Publish the stop payload (``offline``) on the will topic, unless ``publish_state``
        is False (the topic is another bridge's), and disconnect cleanly (so no will)."""
        self._stopping = True
        client = self._client
        if client is not None and self.connected:
            if publish_state:
                info = client.publish(self.settings.will_topic, self.settings.stop_payload, 1,
                                      True)
                with contextlib.suppress(RuntimeError, ValueError):
                    # paho signals the PUBACK through a condition the event loop sets meanwhile
                    await asyncio.to_thread(info.wait_for_publish, 2)
            client.disconnect()
        self._disconnected.set()

    @property
    def broker(self) -> str:
        """``host:port`` of the broker in use, or tried last."""
        return where(self._rotation.addresses[self.broker_index])

    def _make_client(self) -> _Client:
        s = self.settings
        protocol = paho.MQTTv5 if self.version == "5" else paho.MQTTv311
        client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=protocol,
            clean_session=None if protocol == paho.MQTTv5 else True,
        )
        # 0: paho never holds a message back (our window does) and skips the walk over its
        # in-flight table that it would otherwise make on every acknowledgement
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(0)
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.use_tls:
            client.tls_set_context(tls_context(s))
        if s.will_topic:  # empty for helper connections (check), which must not set a will
            client.will_set(s.will_topic, s.will_payload, 1, True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_suback
        client.on_unsubscribe = self._on_request_done
        client.on_log = self._on_log
        return client

    async def _connect_once(self) -> str | None:
        """One connection attempt on the broker at :attr:`broker_index`; None on success, else
        the reason.

        MQTT 5 (when configured) is tried first on every attempt; when the broker refuses it
        ("unsupported protocol version"), closes the connection before any CONNACK, or does
        not answer, MQTT 3.1.1 is tried at once on the same broker, for this connection only
        (see :func:`bridge.connect_policy.fallback`).
        """
        assert self._loop is not None
        configured = self.settings.version
        self.version = configured
        self.fallback_reason = None
        first = outcome = await self._attempt()
        why = fallback(configured, first.outcome, first.code)
        if why is not None:
            self.version = "3.1.1"
            outcome = await self._attempt()
            if outcome.outcome == "accepted":
                self.fallback_reason = fallback_text(why, self._connack_timeout("5"))
                (log.warning if not self._fallback_logged else log.debug)(
                    f"the broker {self.fallback_reason}; using MQTT 3.1.1 for this connection "
                    "(every new connection tries MQTT 5 first; set mqtt.version: \"3.1.1\" to "
                    "skip the attempt)", broker=self.broker)
                self._fallback_logged = True
            else:
                self.version = configured
        if outcome.outcome != "accepted":
            return self._failure(first) if outcome is first else self._failure(first, outcome)
        client = self._client
        assert client is not None
        client.on_log = None  # only the handshake is watched (formatting every line costs)
        if self._disconnected.is_set():  # accepted and closed at once, read in the same turn
            log.info("mqtt connected", broker=self.broker, protocol=self.version)
            return None
        self.connected = True
        self.connections += 1
        self._up.set()
        self.subscribe(self.subscriptions)
        if self.parked:  # what waited during the outage goes first (nothing else flushes it)
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_parked)
        log.info("mqtt connected", broker=self.broker, protocol=self.version)
        self.on_connected()
        return None

    @staticmethod
    def _failure(first: _Attempt, second: _Attempt | None = None) -> str:
        """Why the connection failed: the MQTT 5 attempt's reason, then the 3.1.1 one's."""
        def text(attempt: _Attempt) -> str:
            if attempt.outcome == "refused":
                return f"broker refused the connection: {attempt.text}"
            return attempt.text

        if second is None:
            return text(first)
        if second.text == first.text:
            return f"{text(first)} (with MQTT 5 and with 3.1.1)"
        return f"{text(first)}; with MQTT 3.1.1: {text(second)}"

    def _connack_timeout(self, version: str) -> float:
        """Seconds to wait for the CONNACK. An MQTT 5 CONNECT that 3.1.1 would follow gets half
        of :data:`CONNACK_TIMEOUT`: a broker that ignores MQTT 5 (amqtt) then costs 5 s, not
        10, before the 3.1.1 attempt. A healthy broker answers within milliseconds; one that
        needs over 5 s is misjudged as silent, and merely gets a 3.1.1 connection for that one
        session (its 3.1.1 attempt waits the full timeout), MQTT 5 again on the next."""
        if version == "5" and self.settings.version == "5":
            return CONNACK_TIMEOUT / 2
        return CONNACK_TIMEOUT

    async def _attempt(self) -> _Attempt:
        """Connect with :attr:`version` to the broker at :attr:`broker_index`."""
        assert self._loop is not None
        self._teardown()
        try:
            client = self._make_client()
        except TlsFileError as exc:
            return _Attempt("unreachable", str(exc))
        self._client = client
        self._connack = self._loop.create_future()
        self._disconnected.clear()
        self._socket_error = None
        s = self.settings
        host, port = self._rotation.addresses[self.broker_index]
        try:
            # The TCP (and TLS) handshake blocks, so it runs in a thread; the socket is then
            # handed to the event loop. CONNECT is written by paho during connect().
            await self._loop.run_in_executor(
                None,
                lambda: client.connect(
                    host,
                    port,
                    s.keepalive,
                    clean_start=True if self.version == "5" else paho.MQTT_CLEAN_START_FIRST_ONLY,
                ),
            )
        except ssl.SSLError as exc:
            return _Attempt("unreachable", self._tls_failure(exc))
        except OSError as exc:
            return _Attempt("unreachable", f"cannot reach broker: {exc.strerror or exc}")
        self._attach(client)
        timeout = self._connack_timeout(self.version)
        try:
            async with asyncio.timeout(timeout):
                code, text = await self._connack
        except TimeoutError:
            return _Attempt("silent", f"no CONNACK from the broker within {timeout:g} s")
        if code == -1:
            return _Attempt("hung up", self._tls_message(self._socket_error) if s.use_tls
                            else text)
        return _Attempt("accepted") if code == 0 else _Attempt("refused", text, code)

    def _judge_drop(self, stable: bool) -> None:
        """The connection was lost: if right after packets the broker never acknowledged, find
        the one it probably dropped us for and, once that repeats, stop sending such packets
        (see :class:`bridge.connect_policy.Blocker`). Runs before the next attempt tears the
        client down (its packet ids and the in-flight table are this connection's)."""
        client = self._client
        if client is None:
            return
        in_flight = ((mid, Packet(sent.topic, len(sent.data)))
                     for mid, sent in self._in_flight.items())
        requests = ((mid, Packet(topic, filter=True))
                    for mid, topics in self._requests.items() for topic in topics)
        found = unacknowledged(client._last_mid, in_flight, self._qos0, requests)
        verdict = self._blocker.drop(found.packets, stable, found.complete, self._said,
                                     found.answered)
        packet = verdict.packet
        if verdict.kind == "suspect" and packet is not None:
            log.info("mqtt connection lost right after a packet the broker may refuse; such "
                     "packets are blocked if the next, short connection ends the same way",
                     broker=self.broker, topic=packet.topic, reason=verdict.reason)
        elif verdict.kind == "blocked" and packet is not None:
            self._block(packet.topic, verdict.reason)
        elif verdict.kind == "spared" and packet is not None:
            (log.warning if verdict.first else log.debug)(
                "mqtt: not blocked, as it would block the bridge's state topic too (the bridge "
                "would look offline): " + verdict.reason, broker=self.broker,
                state_topic=self.settings.will_topic)
        elif verdict.kind == "full" and packet is not None:
            (log.warning if verdict.first else log.debug)(
                "mqtt: not blocked, as enough topics are blocked already: " + verdict.reason,
                broker=self.broker)

    def _block(self, topic: str, reason: str) -> None:
        """A new block is in place: send through the test from now on, and say so once."""
        vars(self)["_send"] = self._send_unless_blocked  # shadows the method (see its doc)
        if self.on_blocked is not None:
            self.on_blocked(topic, reason)
        else:
            log.warning(reason, broker=self.broker)

    @property
    def blocked(self) -> list[dict[str, str]]:
        """What is no longer sent (for ``bridge/info``): per rule an example ``topic``, the
        ``rule`` (``topics containing '.'``) and the ``reason``. For the process's life: fix
        the cause and restart to lift it."""
        return [{"topic": b.example, "rule": b.rule.text, "reason": b.reason}
                for b in self._blocker.blocks]

    def _tls_failure(self, exc: ssl.SSLError) -> str:
        """A failed TLS handshake said as such, naming the file concerned."""
        if isinstance(exc, ssl.SSLCertVerificationError):
            ca = self.settings.tls_ca or "the system's CA certificates"
            return (f"TLS handshake failed: the broker's certificate is not trusted by {ca}: "
                    f"{exc.verify_message or exc.reason}")
        return self._tls_message(exc.strerror or str(exc.reason or exc))

    def _tls_message(self, reason: str | None) -> str:
        """A TLS error text (a handshake failure, an alert from the broker) with the file."""
        s = self.settings
        text = (reason or "").upper()
        wanted = (f"the client certificate {s.tls_cert}" if s.tls_cert else
                  "a client certificate (set mqtt.tls.cert and mqtt.tls.key)")
        if "CERTIFICATE" in text or "UNKNOWN_CA" in text:
            if s.tls_cert:
                return f"TLS: the broker refused {wanted}: {reason}"
            return f"TLS: the broker requires {wanted}: {reason}"
        if not reason or "EOF" in text:
            # TLS 1.3 checks the client's certificate after the client's side of the handshake:
            # a refusal can look like a plain hang-up
            return (f"TLS: the broker closed the connection right after the TLS handshake "
                    f"({reason or 'no reason given'}); it probably refused {wanted}")
        return f"TLS handshake failed: {reason}"

    def _on_log(self, _c: paho.Client, _u: Any, level: int, text: str) -> None:
        """During the handshake: remember why paho lost the socket (e.g. a TLS alert)."""
        if level == paho.MQTT_LOG_ERR and self._socket_error is None:
            self._socket_error = text.split(": ", 1)[-1]

    def _attach(self, client: _Client) -> None:
        loop = self._loop
        assert loop is not None
        sock = client.socket()
        if sock is None:
            return
        set_nodelay(sock)

        def register_write(_c: paho.Client, _u: Any, s: Any) -> None:
            loop.add_writer(s, self._guard, client.loop_write)

        def unregister_write(_c: paho.Client, _u: Any, s: Any) -> None:
            loop.remove_writer(s)

        def socket_close(_c: paho.Client, _u: Any, s: Any) -> None:
            loop.remove_reader(s)
            loop.remove_writer(s)

        client.on_socket_register_write = register_write
        client.on_socket_unregister_write = unregister_write
        client.on_socket_close = socket_close
        loop.add_reader(sock, self._guard, functools.partial(self._read, client))
        if client.want_write():
            loop.add_writer(sock, self._guard, client.loop_write)

    @staticmethod
    def _read(client: _Client) -> None:
        """Handle what the socket brought, including what paho left in the read buffer."""
        while client.loop_read() == paho.MQTT_ERR_SUCCESS and client.buffered():
            pass

    def _guard(self, step: Callable[[], Any]) -> None:
        try:
            step()
        except Exception:  # a bug in a callback must not kill the loop's reader
            log.exception("error in mqtt network step")

    def subscribe(self, filters: list[str], no_local: bool = True,
                  qos: int | None = None) -> None:
        """Subscribe now (not restored after a reconnect: callers resubscribe in on_connected).

        ``no_local=False`` receives our own publications too (MQTT 5; 3.1.1 always does)."""
        client = self._client
        if self._blocker:
            filters = [f for f in filters if not self._blocker.blocks_topic(f)]
        if client is None or not self.connected or not filters:
            return
        qos = self.settings.qos if qos is None else qos
        if self.version == "5":
            options = SubscribeOptions(qos=qos, noLocal=no_local)
            _rc, mid = client.subscribe([(topic, options) for topic in filters])
        else:
            _rc, mid = client.subscribe([(topic, qos) for topic in filters])
        if mid is not None:
            self._requests[mid] = filters
            self._no_local[mid] = no_local
            self._sub_qos[mid] = qos
        self._filters.update(filters)

    def unsubscribe(self, filters: list[str]) -> None:
        """Drop subscriptions made with :meth:`subscribe`."""
        client = self._client
        if self._blocker:
            filters = [f for f in filters if not self._blocker.blocks_topic(f)]
        if client is not None and self.connected and filters:
            _rc, mid = client.unsubscribe(filters)
            if mid is not None:
                self._requests[mid] = filters

    def _teardown(self) -> None:
        client = self._client
        self.connected = False
        self._room.set()
        self._up.clear()
        self._flush_scheduled = False
        if client is None:
            return
        sock = client.socket()
        if sock is not None and self._loop is not None:
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
        client.on_disconnect = None
        with contextlib.suppress(Exception):
            client.disconnect()
        self._client = None
        self.published = self.acknowledged = 0
        self._repark_in_flight()
        self._qos0.clear()  # packet ids are per client
        self._requests.clear()
        self._no_local.clear()
        self._sub_qos.clear()
        self._suback_delay.clear()
        self._filters.clear()
        self._said = None

    def _repark_in_flight(self) -> None:
        """Messages the broker never acknowledged are sent again after the reconnect, first: a
        broker that drops the connection (Mosquitto does after an ACL refusal) must lose
        neither a response nor a retained clear. Non-retained ones once only; a newer parked
        retained value of the same topic wins."""
        lost: list[Unacknowledged[_Parked] | _Sent] = []
        for sent in self._in_flight.values():
            if sent.on_ack is not None:
                continue
            if sent.retain:
                lost.append(Unacknowledged(sent.topic, (sent.data, sent.qos, sent.props)))
            elif not sent.resent:
                lost.append(sent._replace(resent=True))
        self._in_flight.clear()
        self._parked.put_back(lost)

    async def _misc_loop(self) -> None:
        while True:
            await asyncio.sleep(1)
            client = self._client
            if client is not None:
                self._guard(client.loop_misc)

    def _subscribed_to(self, topic: str) -> bool:
        """Whether a retained message's topic matches a filter subscribed on this connection.
        amqtt 0.12 also delivers retained messages of topics outside every filter; they are
        dropped, and that is said once."""
        levels = topic.split("/")
        if any(filter_matches(f, levels) for f in self._filters):
            return True
        if not self._leak_reported:
            self._leak_reported = True
            log.warning("the broker sent a retained message on a topic the bridge did not "
                        "subscribe to; such messages are ignored (amqtt 0.12 does this: see "
                        "README, Brokers)", topic=topic, broker=self.broker)
        return False

    # ---- paho callbacks (run inside loop_read / loop_write on the event loop) --------------

    def _on_connect(
        self, _c: paho.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any = None
    ) -> None:
        value = reason.value if isinstance(reason, ReasonCode) else int(reason)
        if self._connack is not None and not self._connack.done():
            self._connack.set_result((value, str(reason)))

    def _on_disconnect(self, _c: paho.Client, _u: Any, flags: Any = None, reason: Any = None,
                       _p: Any = None) -> None:
        self.connected = False
        self._room.set()
        self._up.clear()
        if getattr(flags, "is_disconnect_packet_from_server", False):
            self._said = getattr(reason, "value", None)  # the broker's MQTT 5 DISCONNECT
        connack = self._connack
        if connack is not None and not connack.done():
            connack.set_result((-1, "connection closed before CONNACK"))
        elif connack is not None or self._stopping:
            # after the CONNACK: also when it was read in the same turn as the close, before
            # _connect_once marked the link connected
            self._disconnected.set()

    def _on_request_done(self, _c: paho.Client, _u: Any, mid: int, *_args: Any) -> None:
        """An UNSUBACK."""
        self._requests.pop(mid, None)

    @property
    def subscriptions_pending(self) -> int:
        """Filters not (yet) granted on this connection: awaiting their SUBACK or a retry."""
        return len(self._suback_delay) + sum(
            len(f) for mid, f in self._requests.items() if mid in self._sub_qos)

    def _on_suback(self, client: paho.Client, _u: Any, mid: int, reasons: Any,
                   _p: Any = None) -> None:
        """A SUBACK: a filter refused for a passing reason is subscribed again, a little later
        (a NATS cluster that lost a node refuses some subscriptions for a while; retrying
        works), one refused for good (not authorized, invalid filter) is said once."""
        filters = self._requests.pop(mid, [])
        no_local = self._no_local.pop(mid, True)
        qos = self._sub_qos.pop(mid, None)
        retry: list[str] = []
        for topic, reason in zip(filters, reasons or (), strict=False):
            value = getattr(reason, "value", reason)
            if not isinstance(value, int) or value < 0x80:
                self._suback_delay.pop(topic, None)
                continue
            if value in _PASSING_SUBACK_REFUSALS:
                retry.append(topic)
            if self._suback_throttle.allow(topic) is not None:
                log.warning("the broker refused a subscription" + (
                    "; subscribing again" if value in _PASSING_SUBACK_REFUSALS else ""),
                    topic=topic, reason=str(reason), broker=self.broker)
        if retry and self._loop is not None:
            delay = min(max(self._suback_delay.get(t, 0.5) for t in retry) * 2, 10.0)
            for topic in retry:
                self._suback_delay[topic] = delay

            def again() -> None:
                if client is self._client and self.connected:
                    self.subscribe(retry, no_local, qos)

            self._loop.call_later(delay, again)

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        if message.retain and not self._subscribed_to(message.topic):
            return
        props = getattr(message, "properties", None)
        response_topic = getattr(props, "ResponseTopic", None) if props else None
        correlation = getattr(props, "CorrelationData", None) if props else None
        content_type = getattr(props, "ContentType", None) if props else None
        try:
            self.on_message(
                IncomingMessage(
                    message.topic, bytes(message.payload), bool(message.retain), response_topic,
                    correlation, content_type,
                )
            )
        except Exception:
            log.exception("error handling mqtt message", topic=message.topic)


class _PackedProperties(Properties):
    """PUBLISH properties serialised once: paho re-packs properties on every publish (it walks
    every known property name), which would make the hot path slower than without them."""

    def __init__(self, content_type: str) -> None:
        super().__init__(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        self.ContentType = content_type
        self.PayloadFormatIndicator = 1  # UTF-8 text
        object.__setattr__(self, "_packed", super().pack())  # type: ignore[no-untyped-call]

    def pack(self) -> bytes:
        packed: bytes = object.__getattribute__(self, "_packed")
        return packed


@functools.cache
def content_properties(content_type: str) -> Properties:
    """The shared PUBLISH properties for a content type (MQTT 5; ignored by 3.1.1)."""
    return _PackedProperties(content_type)


def _encode(payload: Payload) -> bytes:
    if callable(payload):
        payload = payload()
    return payload.encode() if isinstance(payload, str) else payload


def set_nodelay(sock: Any) -> None:
    """Send small packets at once (no Nagle delay waiting for the peer's delayed ACK)."""
    with contextlib.suppress(OSError, AttributeError):  # not TCP (e.g. a Unix socket)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def paho_properties(properties: PublishProperties) -> Properties:
    """paho's PUBLISH properties for the bridge's plain values (shared when they carry no
    correlation data, which is all of the hot path)."""
    if properties.correlation_data is None:
        return content_properties(properties.content_type)
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ContentType = properties.content_type
    props.PayloadFormatIndicator = 1
    props.CorrelationData = properties.correlation_data
    return props


def read_retained(settings: MqttSettings, topics: list[str], timeout: float,
                  done: Callable[[dict[str, bytes]], bool]) -> tuple[dict[str, bytes], str | None]:
    """Collect the retained messages on ``topics`` with a throwaway client (its own thread) until
    ``done(collected)`` or ``timeout``; returns them and the broker's refusal, if it refused.

    Raises OSError when no broker (of :attr:`MqttSettings.addresses`) can be reached.
    """
    got: dict[str, bytes] = {}
    refused: list[str] = []
    finished = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=settings.client_id)
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if settings.use_tls:
        client.tls_set(ca_certs=settings.tls_ca, certfile=settings.tls_cert,
                       keyfile=settings.tls_key)
        client.tls_insecure_set(settings.tls_insecure)

    def on_connect(c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        if reason.is_failure:
            refused.append(str(reason))
            finished.set()
        else:
            c.subscribe([(topic, 1) for topic in topics])

    def on_message(_c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        got[msg.topic] = bytes(msg.payload)
        if done(got):
            finished.set()

    client.on_connect = on_connect
    client.on_message = on_message
    for n, (host, port) in enumerate(settings.addresses):  # the first broker that answers
        try:
            client.connect(host, port, 30)
            break
        except OSError:
            if n == len(settings.failover):
                raise
    client.loop_start()
    finished.wait(timeout)
    client.disconnect()
    client.loop_stop()
    return got, refused[0] if refused else None
