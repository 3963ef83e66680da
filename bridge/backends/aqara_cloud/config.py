"""The ``backends:`` entry of an Aqara cloud account (Aqara Open API)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bridge.config_base import (
    BackendConfigBase,
    FieldError,
    Model,
    PositiveFloat,
    at_least,
    config_path,
    host_text,
    http_url,
    identifier,
    no_bool,
    not_blank,
    region_name,
    region_or_url,
)

_AQARA_REGIONS: dict[str, str] = {
    "cn": "open-cn.aqara.com",
    "usa": "open-usa.aqara.com",
    "eu": "open-ger.aqara.com",
    "ru": "open-ru.aqara.com",
    "kr": "open-kr.aqara.com",
    "sg": "open-sg.aqara.com",
}
"""Aqara Open API hosts by region (protocols.md §2.1); the account's region is fixed."""
_AQARA_REGION_ALIASES = {"us": "usa", "ger": "eu", "europe": "eu", "china": "cn",
                         "russia": "ru", "korea": "kr", "singapore": "sg"}
AQARA_API_PATH = "/v3.0/open/api"


def _aqara_non_negative(value: float) -> float:
    if value < 0:
        raise ValueError(f"must be 0 or more (got {value:g})")
    return value


def _aqara_listen(value: str) -> str:
    """``host:port`` (``[v6]:port``); the host defaults to 0.0.0.0 when only ``:port`` is given."""
    text = value.strip()
    if text.isdigit():
        text = f"0.0.0.0:{text}"
    if text.startswith(":"):
        text = "0.0.0.0" + text
    try:
        parts = urlsplit("//" + text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"is not host:port ({exc})") from None
    host = parts.hostname
    if not host or port is None or parts.path or "@" in parts.netloc:
        raise ValueError(f"must be host:port, e.g. 0.0.0.0:8089 (got {value!r})")
    return f"{host_text(host)}:{port}"


def _aqara_path(value: str) -> str:
    text = value.strip()
    if not text.startswith("/"):
        text = "/" + text
    if any(c in text for c in "?# \t\n"):
        raise ValueError(f"must be a plain URL path such as /aqara/push (got {value!r})")
    return text


class AqaraCallbackConfig(Model):
    """The HTTP receiver for the Aqara cloud's trait push (Console > Message push)."""

    listen: Annotated[str, AfterValidator(_aqara_listen)] = "0.0.0.0:8089"
    """Where the bridge listens, ``host:port``."""
    path: Annotated[str, AfterValidator(_aqara_path)] = "/aqara/push"
    """The URL path the cloud POSTs to (the console's push URL must end with it)."""

    @property
    def host(self) -> str:
        """The listening host (without IPv6 brackets)."""
        return urlsplit("//" + self.listen).hostname or "0.0.0.0"

    @property
    def port(self) -> int:
        """The listening port."""
        return urlsplit("//" + self.listen).port or 8089


class AqaraRateLimitConfig(Model):
    """The API call budget the bridge keeps to (free tier: 300 calls per 5 minutes)."""

    calls: Annotated[int, BeforeValidator(no_bool), AfterValidator(at_least(1))] = 300
    per_seconds: PositiveFloat = 300.0


class AqaraCloudBackendConfig(BackendConfigBase):
    """An Aqara cloud account through the Aqara Open API v3 (intents, signed HTTPS calls)."""

    type: Literal["aqara_cloud"]
    name: Annotated[str, AfterValidator(identifier)] = "aqara_cloud"
    region: Annotated[
        Literal["cn", "usa", "eu", "ru", "kr", "sg"] | None,
        BeforeValidator(region_name(_AQARA_REGIONS, _AQARA_REGION_ALIASES)),
    ] = None
    """The account's region (cn, usa, eu, ru, kr, sg); or give ``url`` instead."""
    url: Annotated[str | None, AfterValidator(http_url(('http', 'https'), AQARA_API_PATH))] = None
    """An explicit API URL (e.g. a simulator), instead of ``region``."""
    app_id: Annotated[str, AfterValidator(not_blank)]
    key_id: Annotated[str, AfterValidator(not_blank)]
    app_key: SecretStr
    access_token: SecretStr
    refresh_token: SecretStr | None = None
    account: str | None = None
    """The Aqara account the tokens belong to (documentation only)."""
    token_file: Path | None = None
    """Where the bridge keeps the current token pair after a refresh (refresh tokens are
    single-use). Relative paths are relative to the config file."""
    callback: AqaraCallbackConfig | None = None
    poll_interval: Annotated[
        float, BeforeValidator(no_bool), AfterValidator(_aqara_non_negative)
    ] = 30.0
    """Seconds between polls of every trait value; 0 = push only (needs ``callback``)."""
    rate_limit: AqaraRateLimitConfig = AqaraRateLimitConfig()
    request_timeout: PositiveFloat = 10.0
    reconnect_max_delay: PositiveFloat = 60.0

    @field_validator("app_key", "access_token", "refresh_token", mode="after")
    @classmethod
    def _secret_not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("token_file", mode="after")
    @classmethod
    def _token_file_path(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        return config_path(value, info)

    @model_validator(mode="after")
    def _where_and_how(self) -> AqaraCloudBackendConfig:
        region_or_url(self.region, self.url, "the account's region (cn, usa, eu, ru, kr, sg)")
        if self.poll_interval == 0 and self.callback is None:
            raise FieldError("0 (push only) needs a callback section; nothing would report "
                              "changes", "poll_interval")
        return self

    @property
    def api_url(self) -> str:
        """The API endpoint, ``https://<region host>/v3.0/open/api`` or the given ``url``."""
        if self.url is not None:
            return self.url
        return f"https://{_AQARA_REGIONS[self.region or 'eu']}{AQARA_API_PATH}"

    def summary(self) -> dict[str, Any]:
        """Non-secret facts for ``bridge/info``."""
        out = self.public_dict()
        out["api_url"] = self.api_url
        return out
