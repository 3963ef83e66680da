"""The brokers of tests/brokers.py, driven by a plain paho-mqtt 2.2 client (MQTT 3.1.1).

Each test starts from a retained round trip (publish retained QoS 1, a second client subscribing
to the exact topic gets it with the retain flag), then asserts what was observed of the broker on
the points an MQTT bridge cares about; the docstrings sum the observations up. The brokers a run
needs start in parallel, once per session (RabbitMQ's ~10 s is the longest).
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.brokers import (
    Aedes,
    Amqtt,
    Broker,
    Ejabberd,
    Nats,
    NatsCluster,
    RabbitMq,
    mqtt5_answer,
    running_aedes,
    running_amqtt,
    running_ejabberd,
    running_nats,
    running_nats_cluster,
    running_rabbitmq,
)

pytestmark = pytest.mark.integration

TWO_MIB = 2 * 1024 * 1024  # above nats-server's default max_payload of 1 MiB
UNSUBSCRIBED = 0x80  # SUBACK "failure" (3.1.1) / "unspecified error" (5)

RUNNERS: dict[str, Callable[[], contextlib.AbstractContextManager[Any]]] = {
    "nats": running_nats,
    "nats_cluster": running_nats_cluster,
    "rabbitmq": running_rabbitmq,
    "ejabberd": running_ejabberd,
    "aedes": running_aedes,
    "amqtt": running_amqtt,
}


@pytest.fixture(scope="session")
def started_brokers(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Every broker that a selected test of this module asks for, started at once in parallel
    threads."""
    wanted = sorted({name for item in request.session.items
                     if getattr(getattr(item, "module", None), "__name__", None) == __name__
                     for name in getattr(item, "fixturenames", ()) if name in RUNNERS})
    with contextlib.ExitStack() as stack:
        with ThreadPoolExecutor(max(1, len(wanted))) as pool:
            futures = {name: pool.submit(stack.enter_context, RUNNERS[name]())
                       for name in wanted}
        brokers = {name: future.result() for name, future in futures.items()}
        for name, broker in brokers.items():
            print(f"{name}: {broker.name} {broker.version} started in {broker.started_in:.2f} s")
        yield brokers


@pytest.fixture
def nats(started_brokers: dict[str, Any]) -> Nats:
    broker: Nats = started_brokers["nats"]
    return broker


@pytest.fixture
def nats_cluster(started_brokers: dict[str, Any]) -> NatsCluster:
    cluster: NatsCluster = started_brokers["nats_cluster"]
    return cluster


@pytest.fixture
def rabbitmq(started_brokers: dict[str, Any]) -> RabbitMq:
    broker: RabbitMq = started_brokers["rabbitmq"]
    return broker


@pytest.fixture
def ejabberd(started_brokers: dict[str, Any]) -> Ejabberd:
    broker: Ejabberd = started_brokers["ejabberd"]
    return broker


@pytest.fixture
def aedes(started_brokers: dict[str, Any]) -> Aedes:
    broker: Aedes = started_brokers["aedes"]
    return broker


@pytest.fixture
def amqtt(started_brokers: dict[str, Any]) -> Amqtt:
    broker: Amqtt = started_brokers["amqtt"]
    return broker


# --- a plain paho client -------------------------------------------------------------------------

@dataclass(frozen=True)
class Msg:
    topic: str
    payload: bytes
    retain: bool
    qos: int


class Client:
    """paho 2.2 (CallbackAPIVersion.VERSION2, MQTT 3.1.1) in its own thread, recording what it
    gets; every wait is on a condition, bounded by ``timeout``."""

    def __init__(self, port: int, username: str | None = None, password: str | None = None,
                 timeout: float = 10.0) -> None:
        self.port = port
        self.timeout = timeout
        self.paho = paho.Client(CallbackAPIVersion.VERSION2,
                                client_id=f"harness-{uuid.uuid4().hex[:10]}",
                                protocol=paho.MQTTv311)
        if username is not None:
            self.paho.username_pw_set(username, password)
        self.messages: list[Msg] = []
        self.connack: int | None = None
        self.acked: set[int] = set()
        self.subacks: dict[int, list[int]] = {}
        self.disconnects = 0
        self._changed = threading.Condition()
        self.paho.on_connect = self._on_connect
        self.paho.on_disconnect = self._on_disconnect
        self.paho.on_message = self._on_message
        self.paho.on_publish = self._on_publish
        self.paho.on_subscribe = self._on_subscribe

    def _note(self, change: Callable[[], None]) -> None:
        with self._changed:
            change()
            self._changed.notify_all()

    def _on_connect(self, _c: paho.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self._note(lambda: setattr(self, "connack", int(rc.value)))

    def _on_disconnect(self, _c: paho.Client, _u: Any, _f: Any, _rc: Any, _p: Any) -> None:
        self._note(lambda: setattr(self, "disconnects", self.disconnects + 1))

    def _on_message(self, _c: paho.Client, _u: Any, m: paho.MQTTMessage) -> None:
        msg = Msg(m.topic, bytes(m.payload), bool(m.retain), m.qos)
        self._note(lambda: self.messages.append(msg))

    def _on_publish(self, _c: paho.Client, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        self._note(lambda: self.acked.add(mid))

    def _on_subscribe(self, _c: paho.Client, _u: Any, mid: int, rcs: list[Any], _p: Any) -> None:
        self._note(lambda: self.subacks.__setitem__(mid, [int(rc.value) for rc in rcs]))

    def wait(self, condition: Callable[[], bool], timeout: float | None = None) -> bool:
        with self._changed:
            return self._changed.wait_for(condition, timeout or self.timeout)

    def connect(self) -> Self:
        self.paho.connect("127.0.0.1", self.port, keepalive=30)
        self.paho.loop_start()
        if not self.wait(lambda: self.connack is not None):
            self.close()
            raise AssertionError(f"no CONNACK from {self.port}")
        return self

    def subscribe(self, *filters: str) -> list[int]:
        """Subscribe at QoS 1; the SUBACK's codes (granted QoS, or 0x80 and up for a refusal)."""
        _rc, mid = self.paho.subscribe([(f, 1) for f in filters])
        assert mid is not None
        assert self.wait(lambda: mid in self.subacks), "no SUBACK"
        return self.subacks[mid]

    def publish(self, topic: str, payload: bytes, retain: bool = True,
                timeout: float | None = None) -> bool:
        """Publish at QoS 1; True once the PUBACK came, False if the broker hung up first (or
        did not acknowledge within ``timeout``)."""
        before = self.disconnects
        mid = self.paho.publish(topic, payload, 1, retain).mid
        self.wait(lambda: mid in self.acked or self.disconnects > before, timeout)
        return mid in self.acked

    def got(self, topic: str) -> list[Msg]:
        with self._changed:
            return [m for m in self.messages if m.topic == topic]

    def settle(self, marker_topic: str) -> None:
        """Publish a non-retained marker to ``marker_topic`` (which this client subscribed to)
        and wait for it: what the broker sends for earlier subscriptions came before it."""
        marker = uuid.uuid4().hex.encode()
        assert self.publish(marker_topic, marker, retain=False)
        assert self.wait(lambda: any(m.payload == marker for m in self.messages)), "no marker"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.paho.disconnect()
        self.paho.loop_stop()

    def __enter__(self) -> Self:
        return self.connect()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def client(broker: Broker, port: int | None = None) -> Client:
    return Client(port or broker.port, broker.username, broker.password)


def prefix() -> str:
    return f"harness/{uuid.uuid4().hex[:8]}"


def eventually(check: Callable[[], bool], timeout: float) -> float:
    """Retry ``check`` (itself bounded in time) until it holds; the seconds it took."""
    began = time.monotonic()
    while not check():
        assert time.monotonic() - began < timeout, f"not within {timeout} s"
    return time.monotonic() - began


# --- what every broker is asked ------------------------------------------------------------------

def assert_retained_round_trip(broker: Broker, topic: str, payload: bytes = b"on") -> None:
    with client(broker) as writer:
        assert writer.publish(topic, payload)
    with client(broker) as reader:
        assert reader.subscribe(topic) == [1]
        assert reader.wait(lambda: bool(reader.got(topic)))
        assert reader.got(topic) == [Msg(topic, payload, True, 1)]


def retained_on_wildcards(broker: Broker, base: str) -> dict[str, bool]:
    """Which of ``base/#`` and ``base/+`` a new subscriber gets ``base/state``'s retained
    message on; live (non-retained) messages are checked to reach both in any case."""
    with client(broker) as writer:
        assert writer.publish(f"{base}/state", b"retained")
    found: dict[str, bool] = {}
    for pattern in (f"{base}/#", f"{base}/+"):
        with client(broker) as reader:
            marker = f"{base}/marker-{uuid.uuid4().hex[:6]}"
            assert reader.subscribe(pattern, marker)[0] == 1
            reader.settle(marker)
            found[pattern] = any(m.retain for m in reader.got(f"{base}/state"))
            with client(broker) as writer:
                assert writer.publish(f"{base}/state", b"live", retain=False)
            assert reader.wait(lambda: any(m.payload == b"live"
                                           for m in reader.got(f"{base}/state")))
    return found


def payload_round_trip(broker: Broker, topic: str, size: int) -> bool:
    payload = bytes(range(256)) * (size // 256)
    with client(broker) as reader:
        assert reader.subscribe(topic) == [1]
        with client(broker) as writer:
            if not writer.publish(topic, payload, retain=False, timeout=30):
                return False
        return reader.wait(lambda: any(m.payload == payload for m in reader.got(topic)), 30)


def retained_kept_over_restart(broker: Broker, topic: str) -> bool:
    """Restart the broker (same port): does a new subscriber still get the retained message?"""
    port = broker.port
    with client(broker) as writer:
        assert writer.publish(topic, b"before restart")
    broker.restart()
    assert broker.port == port
    with client(broker) as reader:
        assert reader.subscribe(topic, f"{topic}/marker") == [1, 1]
        reader.settle(f"{topic}/marker")
        return [m.payload for m in reader.got(topic)] == [b"before restart"]


@dataclass
class OddTopic:
    """What became of a retained publish to a topic with ``.`` or a space."""

    puback: bool
    publisher_dropped: bool
    suback: list[int]
    """The SUBACK codes for the exact filters, subscribed before the publish."""
    received_as: list[str]
    """The topics that subscriber got the message under (live)."""
    retained_as: list[str]
    """The topics a client subscribing afterwards got it under, flagged retained."""


def odd_topic(broker: Broker, topic: str, *also: str) -> OddTopic:
    """Subscribe to ``topic`` and ``also`` (exact), publish retained to ``topic``; then a
    new client subscribes to the same filters and gets the retained message, or not."""
    payload = uuid.uuid4().hex.encode()
    marker = f"{topic.split('/')[0]}/marker-{uuid.uuid4().hex[:6]}"
    with client(broker) as reader:
        suback = reader.subscribe(topic, *also, marker)[:-1]
        with client(broker) as writer:
            puback = writer.publish(topic, payload, timeout=5)
            dropped = writer.disconnects > 0
        if puback:
            assert reader.wait(lambda: any(m.payload == payload for m in reader.messages), 5)
        reader.settle(marker)
        received = [m.topic for m in reader.messages if m.payload == payload]
    with client(broker) as late:
        if late.subscribe(topic, *also, marker)[:-1] != suback:
            return OddTopic(puback, dropped, suback, received, ["(SUBACK changed)"])
        if puback and UNSUBSCRIBED not in suback:
            late.wait(lambda: any(m.payload == payload for m in late.messages), 5)
        late.settle(marker)
        retained = [m.topic for m in late.messages if m.payload == payload and m.retain]
    return OddTopic(puback, dropped, suback, received, retained)


# --- the brokers ---------------------------------------------------------------------------------

def test_nats(nats: Nats) -> None:
    """NATS 2.9.10 (Debian nats-server), MQTT over JetStream, one node.

    - MQTT 5: refused with a 3.1.1-style CONNACK, return code 1 "unacceptable protocol version"
      (the bridge's fallback to 3.1.1 catches it).
    - Retained messages reach exact, ``#`` and ``+`` subscribers.
    - A topic with ``.`` or a space: the broker hangs up on the publisher without a PUBACK
      (logs "characters ' ' and '.' not supported for MQTT topics"; paho's reconnect then
      retries into the same wall), and refuses such a subscription with SUBACK 0x80.
    - Payload: 2 MiB round trip although nats-server's max_payload is 1 MiB; by hand, 16 MiB
      passes and 64 MiB is PUBACKed but the subscriber is cut as a slow consumer (MaxPending
      64 MiB) and never gets it.
    - Restart (same port): retained messages are kept (JetStream file store).
    """
    base = prefix()
    assert_retained_round_trip(nats, f"{base}/plug/state")
    assert mqtt5_answer(nats.port).kind == "connack311"
    assert mqtt5_answer(nats.port).code == 1
    assert retained_on_wildcards(nats, f"{base}/wild") == {f"{base}/wild/#": True,
                                                         f"{base}/wild/+": True}
    for topic in (f"{base}/kitchen.plug", f"{base}/kitchen plug"):
        outcome = odd_topic(nats, topic)
        assert outcome == OddTopic(puback=False, publisher_dropped=True, suback=[UNSUBSCRIBED],
                                   received_as=[], retained_as=[])
    assert payload_round_trip(nats, f"{base}/big", TWO_MIB)
    assert retained_kept_over_restart(nats, f"{base}/restart")


def test_nats_cluster(nats_cluster: NatsCluster) -> None:
    """NATS 2.9.10, a 3-node JetStream cluster, ``mqtt { stream_replicas: 3 }``.

    - MQTT is served only once JetStream has a meta leader and the MQTT streams exist: until
      then a CONNECT gets no CONNACK (or the node logs "no suitable peers for placement"). Each
      node's first MQTT client sets up its MQTT state (several seconds; three nodes started
      together are ready in ~6 s).
    - A retained message published on node 1 is delivered as retained on node 3.
    - Node 1 SIGKILLed: nodes 2 and 3 stall first (by hand: ~3-5 s without a CONNACK, a publish
      PUBACKed after 6-8 s), then serve the retained message published on node 1 and take new
      retained publishes, received as retained on the other node.
    - While node 1 is down, about a third of new QoS 1 subscriptions (on nodes 2 and 3 alike,
      also with ``consumer_replicas: 1``, also 45 s after the kill) are refused with SUBACK 0x80
      after a 4 s stall: the JetStream consumer behind a QoS 1 subscription is not created
      ("timeout for request type CC"). The same subscription made again succeeds; QoS 0
      subscriptions always work. A bridge must resubscribe a refused filter.
    - Node 1, started again, serves what was published while it was down (it too may refuse
      the first QoS 1 subscriptions).
    """
    p1, p2, p3 = nats_cluster.ports
    topic = f"{prefix()}/plug/state"
    with Client(p1) as writer:
        assert writer.publish(topic, b"from node 1")
    with Client(p3) as reader:
        assert reader.subscribe(topic) == [1]
        assert reader.wait(lambda: bool(reader.got(topic)))
        assert reader.got(topic) == [Msg(topic, b"from node 1", True, 1)]

    nats_cluster.kill(0)
    assert nats_cluster.nodes[0].process is None

    def retained_at_qos0(port: int, payload: bytes) -> bool:
        with contextlib.suppress(AssertionError), Client(port, timeout=3) as reader:
            reader.paho.subscribe(topic, 0)
            return reader.wait(lambda: any(m.payload == payload and m.retain
                                           for m in reader.got(topic)), 3)
        return False

    def new_publish_taken() -> bool:
        with contextlib.suppress(AssertionError), Client(p2, timeout=3) as writer:
            return writer.connack == 0 and writer.publish(topic, b"from node 2", timeout=3)
        return False

    outage = eventually(lambda: retained_at_qos0(p2, b"from node 1"), 60)
    outage += eventually(new_publish_taken, 60)
    print(f"NATS cluster without node 1: retained served and publishes taken after {outage:.1f} s")
    assert eventually(lambda: retained_at_qos0(p3, b"from node 2"), 30) < 30

    codes: list[int] = []
    for attempt in range(12):
        with Client(p3 if attempt % 2 else p2) as reader:
            codes += reader.subscribe(topic)
            if codes[-1] == 1:
                assert reader.wait(lambda: any(m.payload == b"from node 2" and m.retain
                                               for m in reader.got(topic)))
                break
    print(f"QoS 1 SUBACKs without node 1: {codes}")
    assert codes[-1] == 1
    assert set(codes[:-1]) <= {UNSUBSCRIBED}

    nats_cluster.start_node(0)
    rejoined: list[int] = []  # a node back in the cluster may refuse the first ones too
    for _attempt in range(12):
        with Client(p1) as reader:
            rejoined += reader.subscribe(topic)
            if rejoined[-1] == 1:
                assert reader.wait(lambda: any(m.payload == b"from node 2"
                                               for m in reader.got(topic)))
                break
    print(f"QoS 1 SUBACKs on node 1 back: {rejoined}")
    assert rejoined[-1] == 1
    assert set(rejoined[:-1]) <= {UNSUBSCRIBED}


def test_rabbitmq(rabbitmq: RabbitMq) -> None:
    """RabbitMQ 3.10.8 (Debian rabbitmq-server), rabbitmq_mqtt plugin, anonymous (guest).

    - MQTT 5: the broker hangs up without a CONNACK (logs a protocol error): the bridge's
      fallback, which needs a CONNACK refusal, never triggers; it must be configured for 3.1.1.
    - Retained messages reach exact-topic subscribers only: ``#`` and ``+`` subscribers get
      none (live messages do reach them).
    - ``.`` in a topic is the AMQP routing-key separator: a message published to ``a/b.c`` is
      delivered as ``a/b/c``, to subscribers of ``a/b.c`` and of ``a/b/c`` alike (a client
      subscribed to both gets one live copy but one retained copy per subscription). A space
      is fine.
    - Payload: 2 MiB round trip; by hand 128 MiB passes and 140 MB is refused (channel error
      "larger than configured max size 134217728"): no PUBACK, the message is lost.
    - Restart (same ports, same node and mnesia): retained messages are kept. Start ~10 s.
    """
    base = prefix()
    assert_retained_round_trip(rabbitmq, f"{base}/plug/state")
    assert mqtt5_answer(rabbitmq.port).kind == "closed"
    assert retained_on_wildcards(rabbitmq, f"{base}/wild") == {f"{base}/wild/#": False,
                                                             f"{base}/wild/+": False}
    slashed = f"{base}/kitchen/plug"
    dotted = odd_topic(rabbitmq, f"{base}/kitchen.plug", slashed)
    # one live copy (one queue per client), one retained copy per matching subscription
    assert dotted == OddTopic(puback=True, publisher_dropped=False, suback=[1, 1],
                              received_as=[slashed], retained_as=[slashed, slashed])
    spaced = odd_topic(rabbitmq, f"{base}/kitchen plug")
    assert spaced == OddTopic(puback=True, publisher_dropped=False, suback=[1],
                              received_as=[f"{base}/kitchen plug"],
                              retained_as=[f"{base}/kitchen plug"])
    assert payload_round_trip(rabbitmq, f"{base}/big", TWO_MIB)
    assert retained_kept_over_restart(rabbitmq, f"{base}/restart")


def test_ejabberd(ejabberd: Ejabberd) -> None:
    """ejabberd 23.01 (Debian ejabberd) with mod_mqtt, host ``localhost``, internal auth.

    - Authentication: every client needs the username (a user of ``localhost``, or a JID) and
      password of a registered ejabberd user; without them the CONNACK refuses (3.1.1 return
      code 5 "not authorized"; MQTT 5 reason 0x87).
    - MQTT 5: supported (CONNACK reason 0, with properties).
    - Retained messages reach exact, ``#`` and ``+`` subscribers. ``.`` and spaces are plain
      characters.
    - mod_mqtt's max_topic_depth is 8 by default: a 9-level filter is refused with SUBACK 0x8F
      "topic filter invalid" (an MQTT 5 code, in a 3.1.1 SUBACK).
    - Payload: 2 MiB round trip; by hand 64 MiB passes (no max_payload_size by default).
    - Restart (same port, same spool): retained messages are kept (mnesia). Start ~1-2 s.
    """
    base = prefix()
    assert_retained_round_trip(ejabberd, f"{base}/plug/state")
    with Client(ejabberd.port) as anonymous:
        assert anonymous.connack == 135  # paho maps 3.1.1's 5 to MQTT 5's 0x87 "not authorized"
    assert mqtt5_answer(ejabberd.port).code == 0x87
    answer = mqtt5_answer(ejabberd.port, ejabberd.username, ejabberd.password)
    assert (answer.kind, answer.code) == ("connack5", 0)
    assert retained_on_wildcards(ejabberd, f"{base}/wild") == {f"{base}/wild/#": True,
                                                             f"{base}/wild/+": True}
    for topic in (f"{base}/kitchen.plug", f"{base}/kitchen plug"):
        assert odd_topic(ejabberd, topic) == OddTopic(
            puback=True, publisher_dropped=False, suback=[1], received_as=[topic],
            retained_as=[topic])
    with client(ejabberd) as deep:
        assert deep.subscribe("/".join(["level"] * 8)) == [1]
        assert deep.subscribe("/".join(["level"] * 9)) == [0x8F]
    assert payload_round_trip(ejabberd, f"{base}/big", TWO_MIB)
    assert retained_kept_over_restart(ejabberd, f"{base}/restart")


def test_aedes(aedes: Aedes) -> None:
    """Aedes 1.2.0 (npm), the broker of many Node-RED setups, in-memory persistence.

    - MQTT 5: refused with a 3.1.1-style CONNACK, return code 1 (the bridge falls back).
    - Retained messages reach exact, ``#`` and ``+`` subscribers; ``.`` and spaces are plain.
    - Payload: 2 MiB round trip; by hand 64 MiB passes.
    - Restart (same port): retained messages are lost (in-memory): the bridge must publish its
      state again when it reconnects.
    """
    base = prefix()
    assert_retained_round_trip(aedes, f"{base}/plug/state")
    assert (mqtt5_answer(aedes.port).kind, mqtt5_answer(aedes.port).code) == ("connack311", 1)
    assert retained_on_wildcards(aedes, f"{base}/wild") == {f"{base}/wild/#": True,
                                                          f"{base}/wild/+": True}
    for topic in (f"{base}/kitchen.plug", f"{base}/kitchen plug"):
        assert odd_topic(aedes, topic) == OddTopic(
            puback=True, publisher_dropped=False, suback=[1], received_as=[topic],
            retained_as=[topic])
    assert payload_round_trip(aedes, f"{base}/big", TWO_MIB)
    assert not retained_kept_over_restart(aedes, f"{base}/restart")


def test_amqtt(amqtt: Amqtt) -> None:
    """amqtt 0.12.1 (PyPI, .venv-amqtt), anonymous, no persistence plugin.

    - MQTT 5: refused with a 3.1.1-style CONNACK, return code 1 (the bridge falls back).
    - Retained messages reach exact, ``#`` and ``+`` subscribers; ``.`` and spaces are plain.
    - Bug: on every CONNECT the broker sends the new client, at QoS 0, the retained messages
      matching every filter that *any* client ever subscribed to, before the client subscribed
      to anything: a client gets retained messages it never asked for (the bridge must ignore
      topics it did not subscribe to).
    - Payload: 2 MiB round trip; by hand 64 MiB passes.
    - Restart (same port): retained messages are lost (in memory).
    """
    base = prefix()
    assert_retained_round_trip(amqtt, f"{base}/plug/state")
    assert (mqtt5_answer(amqtt.port).kind, mqtt5_answer(amqtt.port).code) == ("connack311", 1)
    assert retained_on_wildcards(amqtt, f"{base}/wild") == {f"{base}/wild/#": True,
                                                          f"{base}/wild/+": True}
    for topic in (f"{base}/kitchen.plug", f"{base}/kitchen plug"):
        outcome = odd_topic(amqtt, topic)
        assert outcome.puback
        assert not outcome.publisher_dropped
        assert outcome.suback == [1]
        assert outcome.received_as == [topic]
        assert topic in outcome.retained_as  # and maybe a leaked copy (below)
    # the leak: while another client is subscribed to plug/state, a client that subscribes
    # only to an unrelated topic gets plug/state anyway
    with client(amqtt) as owner, client(amqtt) as bystander:
        assert owner.subscribe(f"{base}/plug/state") == [1]
        owner.settle(f"{base}/plug/state")
        assert bystander.subscribe(f"{base}/unrelated") == [1]
        bystander.settle(f"{base}/unrelated")
        with client(amqtt) as late:  # connects after the subscription above exists
            assert late.wait(lambda: bool(late.got(f"{base}/plug/state")), timeout=10)
            leaked = late.got(f"{base}/plug/state")
            assert all(m.retain and m.qos == 0 for m in leaked)
    assert payload_round_trip(amqtt, f"{base}/big", TWO_MIB)
    assert not retained_kept_over_restart(amqtt, f"{base}/restart")
