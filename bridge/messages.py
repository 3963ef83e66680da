"""MQTT messages as plain values: what the core and the outputs send and receive.

No MQTT library type appears here; the MQTT edge (:mod:`bridge.mqtt`) converts these to and from
paho's, so everything above it stays sans-IO and library-free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

JSON = "application/json"
"""Content type of payloads that are JSON text (numbers, booleans, documents, quoted strings)."""
TEXT = "text/plain"
"""Content type of payloads that are a string as it is (not to be parsed). Bare, without
``; charset=utf-8``: Node-RED's ``mqtt in`` looks the whole content type up among the media types
it knows, and tries any other as JSON; the payload format indicator already says UTF-8."""


@dataclass(frozen=True, slots=True)
class PublishProperties:
    """The MQTT 5 PUBLISH properties the bridge sets (ignored on MQTT 3.1.1)."""

    content_type: str
    correlation_data: bytes | None = None


Payload = str | bytes | Callable[[], str | bytes]
"""What may be published: the bytes, or a callable that builds them when the message is sent
(a message parked while the link is congested is then built once, from the latest state)."""

JSON_PROPERTIES = PublishProperties(JSON)
TEXT_PROPERTIES = PublishProperties(TEXT)


def response_properties(correlation_data: bytes | None) -> PublishProperties:
    """The properties of an answer: JSON, with the request's correlation data if it had some."""
    if correlation_data is None:
        return JSON_PROPERTIES
    return PublishProperties(JSON, correlation_data)


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A message received on one of our subscriptions."""

    topic: str
    payload: bytes
    retain: bool = False
    response_topic: str | None = None
    correlation_data: bytes | None = None
    content_type: str | None = None
    """The MQTT 5 content type it was published with (None: none, or MQTT 3.1.1)."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a write came from, to answer it (bridge/log and the MQTT 5 response topic)."""

    topic: str
    payload: str
    response_topic: str | None = None
    correlation_data: bytes | None = None

    @classmethod
    def of(cls, message: IncomingMessage) -> Origin:
        """The origin of a received message."""
        return cls(message.topic, message.payload.decode("utf-8", "replace"),
                   message.response_topic, message.correlation_data)


class MqttPort(Protocol):
    """The MQTT operations the core and the outputs use (``bridge.mqtt.MqttLink``)."""

    def publish(self, topic: str, payload: Payload, retain: bool = False,
                qos: int | None = None, properties: PublishProperties | None = None) -> None: ...

    def subscribe(self, filters: list[str], no_local: bool = True,
                  qos: int | None = None) -> None: ...

    def unsubscribe(self, filters: list[str]) -> None: ...
