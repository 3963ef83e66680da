"""The private paho API bridge/mqtt.py's ``_Client`` relies on is still what it was written for.

paho-mqtt is pinned to 2.2.x in pyproject.toml; when a new paho is allowed, this fails until
the overrides in bridge/mqtt.py were checked against it.
"""

from __future__ import annotations

import inspect
import time
from importlib.metadata import version

import paho.mqtt.client as paho
from paho.mqtt import _packet
from paho.mqtt.enums import CallbackAPIVersion

from bridge.mqtt import _Client

SIGNATURES = {
    "_sock_send": ["self", "buf"],
    "_sock_recv": ["self", "bufsize"],
    "_packet_write": ["self"],
    "_handle_pubackcomp": ["self", "cmd"],
    "_mid_generate": ["self"],
    "_raise_for_invalid_topic": ["topic"],
    "_send_publish": ["self", "mid", "topic", "payload", "qos", "retain", "dup", "info",
                      "properties"],
    "_call_socket_register_write": ["self"],
    "_easy_log": ["self", "level", "fmt", "args"],
    "want_write": ["self"],
    "loop_read": ["self", "max_packets"],
    "_packet_read": ["self"],
}

CALLS = {
    # the packets of one loop_write reach the socket through _sock_send, one by one
    "_packet_write": ["self._sock_send(", "self._out_packet.popleft()",
                      "self._out_packet.appendleft(packet)", "except BlockingIOError"],
    "loop_write": ["self._packet_write()", "self.want_write()"],
    # every byte read comes through _sock_recv
    "_packet_read": ["self._sock_recv(1)", "self._sock_recv(self._in_packet['to_process'])",
                     "if self._in_packet['command'] == 0:"],
    # one _packet_read per loop_read call at most (our table of QoS 1 messages is not paho's)
    "loop_read": ["rc = self._packet_read()"],
    "_packet_handle": ['self._handle_pubackcomp("PUBACK")'],
    "_handle_pubackcomp": ["mid in self._out_messages", "self._do_on_publish("],
    # a publish queued while no loop_write runs registers the socket for writing
    "_packet_queue": ["self._out_packet.append(mpkt)", "self._call_socket_register_write()"],
}


def test_paho_is_the_pinned_version() -> None:
    assert version("paho-mqtt").startswith("2.2."), version("paho-mqtt")


def test_the_overridden_and_called_methods_keep_their_signatures() -> None:
    for name, params in SIGNATURES.items():
        assert list(inspect.signature(getattr(paho.Client, name)).parameters) == params, name
    assert list(inspect.signature(_packet.decode_puback).parameters) == [
        "header", "packet", "protocol"]


def test_paho_still_routes_its_io_and_acknowledgements_through_them() -> None:
    for name, calls in CALLS.items():
        source = inspect.getsource(getattr(paho.Client, name))
        for call in calls:
            assert call in source, (name, call)


def test_the_state_the_overrides_read_exists_on_a_new_client() -> None:
    client = _Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    assert client._in_packet["packet"] == bytearray()
    assert client._out_messages == {}
    assert hasattr(client._out_message_mutex, "__enter__")
    assert client._sock is None
    assert client._protocol == paho.MQTTv5
    assert client._in_packet["command"] == 0
    assert not client._out_packet
    assert isinstance(client._last_msg_out, float)
    assert isinstance(client._last_bytes_received, float)
    assert paho.time_func is time.monotonic
    assert not client.want_write()
    assert not client.buffered()
