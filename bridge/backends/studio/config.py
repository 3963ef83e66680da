"""The ``backends:`` entry of an Aqara Studio hub."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    SecretStr,
    field_validator,
)

from bridge.config_base import (
    BackendConfigBase,
    PositiveFloat,
    host_text,
    identifier,
    split_url,
)


def _studio_url(value: str) -> str:
    """Normalise to ``ws://host[:port]`` / ``wss://host[:port]`` (any path dropped).

    A bare ``host[:port]`` means ``ws://``, or ``wss://`` when the port is 443.
    """
    value = value.strip()
    had_scheme = "://" in value
    if not had_scheme:
        value = "ws://" + value
    parts = split_url(value)
    scheme = parts.scheme.lower()
    secure = {"ws": False, "http": False, "wss": True, "https": True}.get(scheme)
    if secure is None:
        raise ValueError(
            f"unsupported scheme {scheme + '://'!r}; use ws://host[:port] or wss://host[:port]"
        )
    if "@" in parts.netloc:
        raise ValueError("must not contain a user name or password; put the token in 'token'")
    host = parts.hostname
    if not host:
        raise ValueError("has no host name; use ws://host[:port]")
    port = parts.port
    if port == 0:
        raise ValueError("port must be between 1 and 65535 (got 0)")
    if not had_scheme and port == 443:
        secure = True
    netloc = host_text(host) + (f":{port}" if port is not None else "")
    return f"{'wss' if secure else 'ws'}://{netloc}"


class StudioBackendConfig(BackendConfigBase):
    """An Aqara Studio hub, Data Export API v1 (WebSocket ``/open/ws`` + HTTP ``/open/api/v1``)."""

    type: Literal["studio"]
    name: Annotated[str, AfterValidator(identifier)] = "studio"
    url: Annotated[str, AfterValidator(_studio_url)]
    """Normalised to ``ws://host[:port]`` or ``wss://host[:port]``."""
    token: SecretStr
    request_timeout: PositiveFloat = 10.0
    ping_interval: PositiveFloat = 30.0
    reconnect_max_delay: PositiveFloat = 60.0

    @field_validator("token", mode="after")
    @classmethod
    def _token_not_empty(cls, value: SecretStr) -> SecretStr:
        plain = value.get_secret_value().strip()
        if not plain or plain.lower() == "bearer":
            raise ValueError("must not be empty")
        return value

    @property
    def ws_url(self) -> str:
        """The WebSocket endpoint, ``ws[s]://host[:port]/open/ws``."""
        return f"{self.url}/open/ws"

    @property
    def http_url(self) -> str:
        """The HTTP API endpoint, ``http[s]://host[:port]/open/api/v1``."""
        scheme, rest = self.url.split("://", 1)
        return f"{'https' if scheme == 'wss' else 'http'}://{rest}/open/api/v1"

    def summary(self) -> dict[str, Any]:
        """Non-secret facts for ``bridge/info``."""
        out = self.public_dict()
        out["ws_url"] = self.ws_url
        out["http_url"] = self.http_url
        return out
