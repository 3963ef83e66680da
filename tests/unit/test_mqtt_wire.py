"""The link's own PUBLISH encoder and PUBACK reader against paho's, byte for byte, over a real
socket pair (paho's encoder and decoder are the witnesses: they stay in paho and are not ours)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bridge.mqtt import _Client, content_properties

JSON = content_properties("application/json")


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    broker.settimeout(5)
    yield ours, broker
    ours.close()
    broker.close()


def client_on(sock: socket.socket, protocol: int = paho.MQTTv5) -> _Client:
    client = _Client(CallbackAPIVersion.VERSION2, protocol=protocol)
    client._sock = sock
    return client


def sent(client: _Client, broker: socket.socket, publish: Callable[[], Any]) -> bytes:
    publish()
    client.loop_write()
    assert not client.want_write()
    assert client._wbuf == b""
    data = bytearray()
    broker.setblocking(False)
    while True:
        try:
            chunk = broker.recv(1 << 20)
        except BlockingIOError:
            break
        data += chunk
    broker.setblocking(True)
    return bytes(data)


@pytest.mark.parametrize("protocol", [paho.MQTTv5, paho.MQTTv311])
@pytest.mark.parametrize("size", [0, 7, 115, 116, 16_300, 200_000])
@pytest.mark.parametrize("retain", [False, True])
@pytest.mark.parametrize("props", [None, JSON])
def test_a_qos1_publish_is_the_packet_paho_would_send(
        protocol: int, size: int, retain: bool, props: Any) -> None:
    # sizes around the one-, two- and three-byte "remaining length" boundaries
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    topic = "aqara/lumi.1/2/Output/OnOff"
    ours_a, broker_a = socket.socketpair()
    ours_b, broker_b = socket.socketpair()
    try:
        for sock in (ours_a, ours_b):
            sock.setblocking(False)
        ours = client_on(ours_a, protocol)
        mid = 0

        def publish() -> None:
            nonlocal mid
            mid = ours.publish_qos1(topic, payload, retain, props)

        got = sent(ours, broker_a, publish)
        reference = client_on(ours_b, protocol)
        want = sent(reference, broker_b, lambda: reference._send_publish(
            mid, topic.encode(), payload, 1, retain, False, None, props))
        assert got == want
        assert len(got) > size
    finally:
        for sock in (ours_a, broker_a, ours_b, broker_b):
            sock.close()


def test_a_publish_queues_behind_packets_paho_still_holds(
        pair: tuple[socket.socket, socket.socket]) -> None:
    ours, broker = pair
    client = client_on(ours)
    client.on_socket_register_write = lambda *_a: None  # as the link: paho only queues
    client._send_publish(7, b"first", b"1", 1, False, False, None, None)
    assert client._out_packet
    client.publish_qos1("second", b"2", False, None)
    got = sent(client, broker, lambda: None)
    assert got.index(b"first") < got.index(b"second")


def test_writing_moves_pahos_keep_alive_clock(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, broker = pair
    client = client_on(ours)
    client._last_msg_out = 0.0
    sent(client, broker, lambda: client.publish_qos1("t", b"x", True, None))
    assert client._last_msg_out > 0.0


def puback(mid: int, rest: bytes = b"") -> bytes:
    return bytes([0x40, 2 + len(rest)]) + mid.to_bytes(2, "big") + rest


def read_all(client: _Client) -> None:
    """As the link's reader does when the socket is readable."""
    while client.loop_read() == paho.MQTT_ERR_SUCCESS and client.buffered():
        pass


def test_acknowledgements_are_all_handled_whoever_reads_them(
        pair: tuple[socket.socket, socket.socket]) -> None:
    ours, broker = pair
    client = client_on(ours)
    acks: list[tuple[int, int]] = []
    client.on_publish = lambda _c, _u, mid, reason, _p: acks.append((mid, reason.value))
    mids = [client.publish_qos1(f"t/{i}", b"v", True, None) for i in range(6)]
    info = client.publish("paho/own", b"v", 1)  # kept in paho's own table
    assert info.mid in client._out_messages
    broker.sendall(
        puback(mids[0])
        + puback(mids[1], b"\x10")  # no matching subscribers
        + puback(info.mid)  # paho's: paho's handler
        + puback(mids[2])
        + puback(mids[3], b"\x87")  # refused: the link reports it
        + puback(mids[4], b"\x00\x00")  # with an (empty) property block
        + puback(mids[5])[:3])  # the rest comes in the next read
    client._last_bytes_received = 0.0
    read_all(client)
    assert acks == [(mids[0], 0), (mids[1], 0x10), (info.mid, 0), (mids[2], 0),
                    (mids[3], 0x87), (mids[4], 0)]
    assert client._last_bytes_received > 0.0
    assert info.mid not in client._out_messages
    broker.sendall(puback(mids[5])[3:])
    read_all(client)
    assert acks[-1] == (mids[5], 0)
    assert not client.buffered()


def test_a_malformed_acknowledgement_is_left_to_paho(
        pair: tuple[socket.socket, socket.socket]) -> None:
    ours, broker = pair
    client = client_on(ours)
    acks: list[int] = []
    client.on_publish = lambda _c, _u, mid, _r, _p: acks.append(mid)
    mid = client.publish_qos1("t", b"v", True, None)
    broker.sendall(puback(mid, b"\x05"))  # 0x05 is no PUBACK reason
    assert client.loop_read() == paho.MQTT_ERR_PROTOCOL
    assert acks == []
