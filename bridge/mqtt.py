"""The MQTT client: paho-mqtt driven by the asyncio loop (no thread, no await per publish).

Publishing is synchronous and never blocks: paho queues the packet and the loop writes it when
the socket is writable. Backpressure is bounded: when more than ``max_queued`` messages are
unacknowledged, retained publications are parked in a dict keyed by topic (the latest value
wins, so the broker still converges to the current state) and non-retained ones in a bounded
deque (the oldest are dropped and counted). While disconnected nothing is queued in paho; the
``on_connected`` hook republishes the full state after every (re)connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import ssl
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from bridge.logsetup import get_logger
from bridge.messages import IncomingMessage, PublishProperties

log = get_logger("bridge.mqtt")

INFLIGHT_WINDOW = 100
"""QoS>0 messages paho keeps in flight. paho rescans its whole in-flight table on every
acknowledgement, so a huge window makes publishing quadratic; more are queued in paho meanwhile."""

CONNACK_TIMEOUT = 10.0
"""Seconds to wait for the broker's answer to CONNECT."""

_UNSUPPORTED_PROTOCOL = 132  # MQTT 5 CONNACK reason "Unsupported protocol version"
_V311_REFUSED_PROTOCOL = 1  # MQTT 3.1.1 CONNACK return code "unacceptable protocol version"


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
    will_payload: str = "offline"
    stop_payload: str = "offline"
    """Published on the will topic by a clean :meth:`MqttLink.stop`."""


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
        self.published = 0
        self.acknowledged = 0
        self.dropped = 0
        self._parked_retained: dict[str, tuple[bytes, int, Properties | None]] = {}
        self._parked_other: deque[tuple[str, bytes, int, Properties | None]] = deque(maxlen=1000)
        self._flush_scheduled = False
        self._client: paho.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._disconnected = asyncio.Event()
        self._up = asyncio.Event()
        self._connack: asyncio.Future[tuple[int, str]] | None = None
        self._stopping = False

    # ---- publishing (hot path) ------------------------------------------------------------

    @property
    def outstanding(self) -> int:
        """Messages handed to paho and not yet acknowledged (or written, for QoS 0)."""
        return self.published - self.acknowledged

    def publish(
        self,
        topic: str,
        payload: str | bytes,
        retain: bool = False,
        qos: int | None = None,
        properties: PublishProperties | None = None,
    ) -> None:
        """Queue a message; never blocks and never awaits."""
        data = payload.encode() if isinstance(payload, str) else payload
        props = None if properties is None else paho_properties(properties)
        level = self.settings.qos if qos is None else qos
        client = self._client
        if not self.connected or client is None:
            if not retain:  # retained state is republished whole on reconnect
                self._park_other(topic, data, level, props)
            return
        if self.published - self.acknowledged >= self.settings.max_queued or (
            self._parked_retained or self._parked_other
        ):
            if retain:
                self._parked_retained[topic] = (data, level, props)
            else:
                self._park_other(topic, data, level, props)
            return
        self.published += 1
        client.publish(topic, data, level, retain, props)

    def _park_other(self, topic: str, data: bytes, qos: int, props: Properties | None) -> None:
        if len(self._parked_other) == self._parked_other.maxlen:
            self.dropped += 1
        self._parked_other.append((topic, data, qos, props))

    def _on_publish(self, *_args: Any) -> None:
        self.acknowledged += 1
        if (
            (self._parked_retained or self._parked_other)
            and not self._flush_scheduled
            and self.outstanding <= self.settings.max_queued // 2
            and self._loop is not None
        ):
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_parked)

    def _flush_parked(self) -> None:
        self._flush_scheduled = False
        client = self._client
        if not self.connected or client is None:
            return
        budget = self.settings.max_queued - self.outstanding
        while self._parked_other and budget > 0:
            topic, data, qos, props = self._parked_other.popleft()
            self.published += 1
            client.publish(topic, data, qos, False, props)
            budget -= 1
        while self._parked_retained and budget > 0:
            topic = next(iter(self._parked_retained))
            data, qos, props = self._parked_retained.pop(topic)
            self.published += 1
            client.publish(topic, data, qos, True, props)
            budget -= 1

    @property
    def parked(self) -> int:
        """Messages waiting for the broker to catch up (bounded)."""
        return len(self._parked_retained) + len(self._parked_other)

    # ---- connection lifecycle -------------------------------------------------------------

    async def run(self) -> None:
        """Connect, and reconnect with backoff and jitter, until cancelled or stopped."""
        self._loop = asyncio.get_running_loop()
        delay = 1.0
        misc = asyncio.create_task(self._misc_loop())
        try:
            while not self._stopping:
                reason = await self._connect_once()
                if reason is None:
                    delay = 1.0
                    await self._disconnected.wait()
                    if self._stopping:
                        break
                    log.warning("mqtt connection lost; reconnecting", broker=self._where())
                    reason = "connection lost"
                else:
                    log.error("mqtt connection failed", broker=self._where(), reason=reason)
                wait = min(delay, self.settings.reconnect_max_delay) * random.uniform(0.5, 1.0)
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.settings.reconnect_max_delay)
        finally:
            misc.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await misc
            self._teardown()

    async def probe(self) -> str | None:
        """Try one connection (for ``check``): None when the broker accepted us, else why not."""
        self._loop = asyncio.get_running_loop()
        try:
            return await self._connect_once()
        finally:
            if self.connected and self._client is not None:
                self._client.disconnect()
            self._teardown()

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the first successful CONNACK (for tests and ``check``)."""
        async with asyncio.timeout(timeout):
            await self._up.wait()

    async def stop(self) -> None:
        """Publish the stop payload (``offline``) on the will topic and disconnect cleanly."""
        self._stopping = True
        client = self._client
        if client is not None and self.connected:
            info = client.publish(self.settings.will_topic, self.settings.stop_payload, 1, True)
            with contextlib.suppress(RuntimeError, ValueError):
                # paho signals the PUBACK through a condition the event loop sets meanwhile
                await asyncio.to_thread(info.wait_for_publish, 2)
            client.disconnect()
        self._disconnected.set()

    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _make_client(self) -> paho.Client:
        s = self.settings
        protocol = paho.MQTTv5 if self.version == "5" else paho.MQTTv311
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=protocol,
            clean_session=None if protocol == paho.MQTTv5 else True,
        )
        client.max_inflight_messages_set(INFLIGHT_WINDOW)
        client.max_queued_messages_set(0)
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.use_tls:
            context = ssl.create_default_context(cafile=s.tls_ca)
            if s.tls_cert:
                context.load_cert_chain(s.tls_cert, s.tls_key)
            if s.tls_insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            client.tls_set_context(context)
        if s.will_topic:  # empty for helper connections (check), which must not set a will
            client.will_set(s.will_topic, s.will_payload, 1, True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    async def _connect_once(self) -> str | None:
        """One connection attempt; None on success, else the reason."""
        assert self._loop is not None
        self._teardown()
        client = self._make_client()
        self._client = client
        self._connack = self._loop.create_future()
        self._disconnected.clear()
        s = self.settings
        try:
            # The TCP (and TLS) handshake blocks, so it runs in a thread; the socket is then
            # handed to the event loop. CONNECT is written by paho during connect().
            await self._loop.run_in_executor(
                None,
                lambda: client.connect(
                    s.host,
                    s.port,
                    s.keepalive,
                    clean_start=True if self.version == "5" else paho.MQTT_CLEAN_START_FIRST_ONLY,
                ),
            )
        except (OSError, ssl.SSLError) as exc:
            return f"cannot reach broker: {exc.strerror or exc}"
        self._attach(client)
        try:
            async with asyncio.timeout(CONNACK_TIMEOUT):
                code, text = await self._connack
        except TimeoutError:
            code, text = -1, "no CONNACK from the broker"
        refused_v5 = code in (_UNSUPPORTED_PROTOCOL, _V311_REFUSED_PROTOCOL) or code == -1
        if refused_v5 and self.version == "5":
            # Some brokers answer an MQTT 5 CONNECT with a refusal, others with silence or by
            # hanging up (amqtt): either way, 3.1.1 is worth one try before backing off.
            log.warning("broker did not accept MQTT 5; trying 3.1.1", broker=self._where(),
                        reason=text)
            self.version = "3.1.1"
            return await self._connect_once()
        if code != 0:
            return f"broker refused the connection: {text}"
        self.connected = True
        self._up.set()
        self.subscribe(self.subscriptions)
        if self.parked:  # what waited during the outage goes first (nothing else flushes it)
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_parked)
        log.info("mqtt connected", broker=self._where(), protocol=self.version)
        self.on_connected()
        return None

    def _attach(self, client: paho.Client) -> None:
        loop = self._loop
        assert loop is not None
        sock = client.socket()
        if sock is None:
            return

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
        loop.add_reader(sock, self._guard, client.loop_read)
        if client.want_write():
            loop.add_writer(sock, self._guard, client.loop_write)

    def _guard(self, step: Callable[[], Any]) -> None:
        try:
            step()
        except Exception:  # a bug in a callback must not kill the loop's reader
            log.exception("error in mqtt network step")

    def subscribe(self, filters: list[str], no_local: bool = True) -> None:
        """Subscribe now (not restored after a reconnect: callers resubscribe in on_connected).

        ``no_local=False`` receives our own publications too (MQTT 5; 3.1.1 always does)."""
        client = self._client
        if client is None or not self.connected or not filters:
            return
        qos = self.settings.qos
        if self.version == "5":
            options = SubscribeOptions(qos=qos, noLocal=no_local)
            client.subscribe([(topic, options) for topic in filters])
        else:
            client.subscribe([(topic, qos) for topic in filters])

    def unsubscribe(self, filters: list[str]) -> None:
        """Drop subscriptions made with :meth:`subscribe`."""
        client = self._client
        if client is not None and self.connected and filters:
            client.unsubscribe(filters)

    def _teardown(self) -> None:
        client = self._client
        self.connected = False
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

    async def _misc_loop(self) -> None:
        while True:
            await asyncio.sleep(1)
            client = self._client
            if client is not None:
                self._guard(client.loop_misc)

    # ---- paho callbacks (run inside loop_read / loop_write on the event loop) --------------

    def _on_connect(
        self, _c: paho.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any = None
    ) -> None:
        value = reason.value if isinstance(reason, ReasonCode) else int(reason)
        if self._connack is not None and not self._connack.done():
            self._connack.set_result((value, str(reason)))

    def _on_disconnect(self, *_args: Any) -> None:
        was_connected = self.connected
        self.connected = False
        self._up.clear()
        if self._connack is not None and not self._connack.done():
            self._connack.set_result((-1, "connection closed before CONNACK"))
        if was_connected or self._stopping:
            self._disconnected.set()

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        props = getattr(message, "properties", None)
        response_topic = getattr(props, "ResponseTopic", None) if props else None
        correlation = getattr(props, "CorrelationData", None) if props else None
        try:
            self.on_message(
                IncomingMessage(
                    message.topic, bytes(message.payload), bool(message.retain), response_topic,
                    correlation,
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

    Raises OSError when the broker cannot be reached.
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
    client.connect(settings.host, settings.port, 30)
    client.loop_start()
    finished.wait(timeout)
    client.disconnect()
    client.loop_stop()
    return got, refused[0] if refused else None
