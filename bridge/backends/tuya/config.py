"""The ``backends:`` entry of a Tuya cloud project."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    SecretStr,
    field_validator,
    model_validator,
)

from bridge.config_base import (
    BackendConfigBase,
    FieldError,
    PositiveFloat,
    http_url,
    identifier,
    not_blank,
    region_name,
    region_or_url,
)

_TUYA_REGION_ALIASES = {"us-w": "us", "us-west": "us", "us-east": "us-e", "eu-west": "eu-w",
                        "eu-c": "eu", "europe": "eu", "china": "cn", "india": "in",
                        "singapore": "sg"}
_TUYA_REGIONS = ("cn", "us", "us-e", "eu", "eu-w", "in", "sg")


class TuyaBackendConfig(BackendConfigBase):
    """A Tuya cloud project (OpenAPI with HMAC-SHA256 signed requests and the message service)
    bridging every home of one app user."""

    type: Literal["tuya"]
    name: Annotated[str, AfterValidator(identifier)] = "tuya"
    region: Annotated[
        Literal["cn", "us", "us-e", "eu", "eu-w", "in", "sg"] | None,
        BeforeValidator(region_name(_TUYA_REGIONS, _TUYA_REGION_ALIASES)),
    ] = None
    """The project's data centre; or give ``url`` (and ``push_url``) instead."""
    url: Annotated[str | None, AfterValidator(http_url(("http", "https")))] = None
    """An explicit OpenAPI base URL (e.g. the simulator), instead of ``region``."""
    push_url: Annotated[
        str | None, AfterValidator(http_url(("ws", "wss"), trailing_slash=True))
    ] = None
    """The message service's base URL (default: the region's ``wss://mqe.…:8285/``)."""
    client_id: Annotated[str, AfterValidator(not_blank)]
    """The cloud project's Access ID / Client ID."""
    secret: SecretStr
    """The cloud project's Access Secret / Client Secret."""
    uid: Annotated[str, AfterValidator(not_blank)]
    """The app user whose homes are bridged (Cloud > Devices > Link App Account)."""
    push: bool = True
    """Take changes from the message service (polling runs only while it is down)."""
    push_topic: Literal["event", "event-test"] = "event"
    poll_interval: PositiveFloat = 30.0
    """Seconds between status polls while the message service is down (or ``push: false``)."""
    request_timeout: PositiveFloat = 10.0
    reconnect_max_delay: PositiveFloat = 60.0
    rooms_in_topics: bool = False
    """Name devices ``<room>_<device>`` in topics (unless ``devices:`` names them)."""

    @field_validator("secret", mode="after")
    @classmethod
    def _secret_not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _where(self) -> TuyaBackendConfig:
        region_or_url(self.region, self.url, "the project's region (cn, us, us-e, eu, eu-w, in)")
        if self.push and self.region is None and self.push_url is None:
            raise FieldError("with an explicit url, give push_url too (or push: false)",
                              "push_url")
        if self.push and len(self.secret.get_secret_value()) < 24:
            raise FieldError("is too short for the message service (Tuya secrets have 32 "
                              "characters)", "secret")
        return self

