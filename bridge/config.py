"""Configuration: YAML with ``${ENV}`` substitution, validated into frozen pydantic models.

Every problem surfaces as one :class:`ConfigError` whose ``str`` is a single line naming the file
and the path of the offending key, e.g. ``config.yaml: mqtt.qos: must be 0, 1 or 2 (got 5)``.
Error messages never contain a secret's value.

Environment references are substituted in string scalars *after* YAML parsing, so a variable's
value can never inject YAML: ``${VAR}``, ``${VAR:-default}`` (default when unset or empty) and
``$${`` for a literal ``${``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bridge.secrets import Redactor, is_secret_key, secret_key_values

__all__ = [
    "SUPPORTED_BACKENDS",
    "AqaraCallbackConfig",
    "AqaraCloudBackendConfig",
    "AqaraRateLimitConfig",
    "BackendConfig",
    "BridgeOptions",
    "Config",
    "ConfigError",
    "DeviceOptions",
    "HomeAssistantConfig",
    "LogConfig",
    "MqttConfig",
    "StudioBackendConfig",
    "TlsConfig",
    "TuyaBackendConfig",
    "load_config",
    "parse_config",
    "strip_userinfo",
]

Loc = tuple[str | int, ...]


class ConfigError(Exception):
    """A configuration problem, as one line a user understands (never containing a secret).

    ``errors`` holds every problem found (one line each); ``str()`` is the first one, followed by
    ``(and N more problems)`` when there are several.
    """

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        self.errors: list[str] = errors if errors else [message]
        extra = len(self.errors) - 1
        if extra > 0:
            message = f"{message} (and {extra} more problem{'s' if extra > 1 else ''})"
        super().__init__(message)
        self.message = message


class _FieldError(ValueError):
    """A validator error that knows where (relative to the validated object) it belongs."""

    def __init__(self, message: str, *loc: str | int) -> None:
        super().__init__(message)
        self.message = message
        self.loc: Loc = loc


# ---- small validators -------------------------------------------------------------------------


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"must be a number (got {str(value).lower()})")
    return value


def _int_range(low: int, high: int) -> Callable[[int], int]:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high} (got {value})")
        return value

    return check


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError(f"must be greater than 0 (got {value:g})")
    return value


def _at_least(low: int) -> Callable[[int], int]:
    def check(value: int) -> int:
        if value < low:
            raise ValueError(f"must be at least {low} (got {value})")
        return value

    return check


_PositiveFloat = Annotated[float, BeforeValidator(_no_bool), AfterValidator(_positive)]


def _topic_prefix(value: str) -> str:
    """A topic prefix: not empty, no wildcards or NUL, no empty levels or ``$`` start."""
    if not value:
        raise ValueError("must not be empty")
    for char, label in (("+", "'+'"), ("#", "'#'"), ("\0", "a NUL character")):
        if char in value:
            raise ValueError(f"must not contain {label} (got {value!r})")
    if value.startswith("/") or value.endswith("/"):
        raise ValueError(f"must not start or end with '/' (got {value!r})")
    if "//" in value:
        raise ValueError(f"must not contain an empty level '//' (got {value!r})")
    if value.startswith("$"):
        raise ValueError(f"must not start with '$' (got {value!r})")
    return value


_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _identifier(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(f"must be 1 to 64 letters, digits, '_' or '-' (got {value!r})")
    return value


def _host_text(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _split_url(value: str) -> SplitResult:
    """``urlsplit`` with a clear error; the port is checked here too."""
    try:
        parts = urlsplit(value)
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"is not a valid URL ({exc})") from None
    return parts


def strip_userinfo(url: str) -> str:
    """``url`` without any ``user:password@`` part (for display)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


# ---- models -----------------------------------------------------------------------------------


class _Model(BaseModel):
    """Base: frozen, unknown keys are errors naming the key (with a suggestion)."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            known = list(cls.model_fields)
            for key in data:
                if key not in cls.model_fields:
                    name = str(key)
                    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
                    hint = (
                        f"did you mean {close[0]!r}?" if close else "allowed: " + ", ".join(known)
                    )
                    raise _FieldError(f"unknown key ({hint})", name)
        return data

    def secret_values(self) -> list[str]:
        """Every secret's plain value in this model and its children (for the log redactor)."""
        found: dict[str, None] = {}
        for value in _walk_values(self):
            if isinstance(value, SecretStr):
                plain = value.get_secret_value()
                if plain:
                    found[plain] = None
                    if plain[:7].lower() == "bearer " and plain[7:].strip():
                        found[plain[7:].strip()] = None
        return list(found)

    def public_dict(self) -> dict[str, Any]:
        """The fields as plain data, without secrets; URLs lose any user info."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) or is_secret_key(name):
                continue
            out[name] = _public(value)
        return out


def _walk_values(obj: Any) -> Iterator[Any]:
    if isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield from _walk_values(getattr(obj, name))
    elif isinstance(obj, Mapping):
        for value in obj.values():
            yield from _walk_values(value)
    elif isinstance(obj, list | tuple):
        for value in obj:
            yield from _walk_values(value)
    else:
        yield obj


def _public(value: Any) -> Any:
    if isinstance(value, _Model):
        return value.public_dict()
    if isinstance(value, Mapping):
        return {str(k): _public(v) for k, v in value.items() if not isinstance(v, SecretStr)}
    if isinstance(value, list | tuple):
        return [_public(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str) and "://" in value:
        return strip_userinfo(value)
    return value


class TlsConfig(_Model):
    """TLS for the broker connection. Relative paths are relative to the config file."""

    ca: Path | None = None
    """CA bundle to verify the broker (None: the system's trust store)."""
    cert: Path | None = None
    """Client certificate (PEM; may also contain the key)."""
    key: Path | None = None
    """Client private key (PEM), when not inside ``cert``."""
    insecure: bool = False
    """Skip verification of the broker's certificate and host name (testing only)."""

    @field_validator("ca", "cert", "key", mode="after")
    @classmethod
    def _file_exists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = value.expanduser()
        base = info.context.get("base_dir") if isinstance(info.context, dict) else None
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        if not path.is_file():
            raise ValueError(f"file not found: {path}")
        return path

    @model_validator(mode="after")
    def _key_needs_cert(self) -> TlsConfig:
        if self.key is not None and self.cert is None:
            raise _FieldError("a client key needs a client certificate (tls.cert)", "key")
        return self


_MQTT_SCHEMES = {"mqtt": False, "tcp": False, "mqtts": True, "ssl": True, "tls": True}


def _mqtt_url(value: str) -> str:
    """Normalise to ``mqtt://host:port`` or ``mqtts://host:port``."""
    value = value.strip()
    if "://" not in value:
        value = "mqtt://" + value
    parts = _split_url(value)
    scheme = parts.scheme.lower()
    if scheme in ("ws", "wss"):
        raise ValueError("MQTT over WebSocket is not supported; use mqtt://host[:port] or mqtts://")
    if scheme not in _MQTT_SCHEMES:
        raise ValueError(
            f"unsupported scheme {scheme + '://'!r}; use mqtt://host[:port] or mqtts://host[:port]"
        )
    if "@" in parts.netloc:
        raise ValueError("must not contain a user name or password here")
    host = parts.hostname
    if not host:
        raise ValueError("has no host name; use mqtt://host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must not have a path or query; use mqtt://host[:port]")
    tls = _MQTT_SCHEMES[scheme]
    port = parts.port if parts.port is not None else (8883 if tls else 1883)
    if port == 0:
        raise ValueError("port must be between 1 and 65535 (got 0)")
    return f"{'mqtts' if tls else 'mqtt'}://{_host_text(host)}:{port}"


def _mqtt_version(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower().removeprefix("mqttv").removeprefix("v")
    if text in ("5", "5.0"):
        return "5"
    if text in ("3.1.1", "311", "3_1_1"):
        return "3.1.1"
    raise ValueError(f"must be 5 or 3.1.1 (got {value!r})")


def _qos(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"must be 0, 1 or 2 (got {str(value).lower()})")
    if str(value).strip() in ("0", "1", "2"):
        return int(str(value).strip())
    shown = str(value) if isinstance(value, int | float) else repr(value)
    raise ValueError(f"must be 0, 1 or 2 (got {shown})")


def _empty_to_none(value: Any) -> Any:
    if isinstance(value, str) and not value:
        return None
    return value


class MqttConfig(_Model):
    """The MQTT broker connection."""

    url: Annotated[str, AfterValidator(_mqtt_url)] = "mqtt://127.0.0.1:1883"
    """``mqtt://host[:port]`` (default port 1883) or ``mqtts://host[:port]`` (TLS, 8883)."""
    base_topic: Annotated[str, AfterValidator(_topic_prefix)] = "aqara"
    username: Annotated[str | None, BeforeValidator(_empty_to_none)] = None
    password: Annotated[SecretStr | None, BeforeValidator(_empty_to_none)] = None
    tls: TlsConfig | None = None
    qos: Annotated[Literal[0, 1, 2], BeforeValidator(_qos)] = 1
    client_id: Annotated[str | None, BeforeValidator(_empty_to_none)] = None
    """None: the caller generates a unique one."""
    version: Annotated[Literal["5", "3.1.1"], BeforeValidator(_mqtt_version)] = "5"
    keepalive: Annotated[int, BeforeValidator(_no_bool), AfterValidator(_int_range(5, 3600))] = 60
    max_queued: Annotated[
        int, BeforeValidator(_no_bool), AfterValidator(_int_range(100, 60000))
    ] = 10000
    """Unacknowledged messages before publishing parks (paho's message ids stop at 65535)."""

    @model_validator(mode="before")
    @classmethod
    def _userinfo_from_url(cls, data: Any) -> Any:
        """Move ``user:password@`` out of the URL into ``username``/``password``."""
        if not isinstance(data, Mapping) or not isinstance(data.get("url"), str):
            return data
        url: str = data["url"].strip()
        probe = url if "://" in url else "mqtt://" + url
        try:
            parts = urlsplit(probe)
        except ValueError:
            return data
        if "@" not in parts.netloc:
            return data
        userinfo, hostport = parts.netloc.rsplit("@", 1)
        if data.get("username") is not None or data.get("password") is not None:
            raise _FieldError(
                "give the user name and password either in the URL or as username/password, "
                "not both",
                "url",
            )
        user, _, password = userinfo.partition(":")
        new = dict(data)
        new["url"] = urlunsplit(parts._replace(netloc=hostport))
        new["username"] = unquote(user)
        if password:
            new["password"] = unquote(password)
        return new

    @field_validator("client_id", mode="after")
    @classmethod
    def _client_id(cls, value: str | None) -> str | None:
        if value is not None and "\0" in value:
            raise ValueError("must not contain a NUL character")
        return value

    @property
    def _parts(self) -> SplitResult:
        return urlsplit(self.url)

    @property
    def host(self) -> str:
        """The broker's host name or IP address."""
        return self._parts.hostname or ""

    @property
    def port(self) -> int:
        """The broker's TCP port."""
        return self._parts.port or (8883 if self.use_tls else 1883)

    @property
    def use_tls(self) -> bool:
        """True for ``mqtts://`` (or ``ssl://``) URLs and whenever a ``tls:`` section is given."""
        return self.url.startswith("mqtts://") or self.tls is not None

    @property
    def protocol_version(self) -> int:
        """The MQTT protocol level: 5 for MQTT 5, 4 for 3.1.1."""
        return 5 if self.version == "5" else 4


def _studio_url(value: str) -> str:
    """Normalise to ``ws://host[:port]`` / ``wss://host[:port]`` (any path dropped).

    A bare ``host[:port]`` means ``ws://``, or ``wss://`` when the port is 443.
    """
    value = value.strip()
    had_scheme = "://" in value
    if not had_scheme:
        value = "ws://" + value
    parts = _split_url(value)
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
    netloc = _host_text(host) + (f":{port}" if port is not None else "")
    return f"{'wss' if secure else 'ws'}://{netloc}"


class _BackendBase(_Model):
    """Common to every backend: ``type`` (the discriminator) and a unique ``name``."""

    name: Annotated[str, AfterValidator(_identifier)]

    def summary(self) -> dict[str, Any]:
        """Non-secret facts for ``bridge/info``."""
        return self.public_dict()


class StudioBackendConfig(_BackendBase):
    """An Aqara Studio hub, Data Export API v1 (WebSocket ``/open/ws`` + HTTP ``/open/api/v1``)."""

    type: Literal["studio"]
    name: Annotated[str, AfterValidator(_identifier)] = "studio"
    url: Annotated[str, AfterValidator(_studio_url)]
    """Normalised to ``ws://host[:port]`` or ``wss://host[:port]``."""
    token: SecretStr
    request_timeout: _PositiveFloat = 10.0
    ping_interval: _PositiveFloat = 30.0
    reconnect_max_delay: _PositiveFloat = 60.0

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


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


def _region(regions: Iterable[str], aliases: Mapping[str, str]) -> Callable[[Any], Any]:
    """A validator taking a region name (any case, ``_`` for ``-``, aliases) or None."""
    names = tuple(regions)

    def check(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            text = value.strip().lower().replace("_", "-")
            text = aliases.get(text, text)
            if text in names:
                return text
        raise ValueError(f"must be {', '.join(names[:-1])} or {names[-1]} (got {value!r})")

    return check


def _http_url(schemes: tuple[str, str], default_path: str = "",
              trailing_slash: bool = False) -> Callable[[str | None], str | None]:
    """A validator for ``scheme://host[:port][/path]`` (``schemes[1]`` when none is given);
    no credentials, query or fragment; an empty path becomes ``default_path``."""

    def check(value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip()
        if "://" not in text:
            text = f"{schemes[1]}://{text}"
        parts = _split_url(text)
        scheme = parts.scheme.lower()
        if scheme not in schemes:
            raise ValueError(f"unsupported scheme {scheme + '://'!r}; use "
                             + " or ".join(f"{s}://host[:port]" for s in schemes))
        if "@" in parts.netloc:
            raise ValueError("must not contain a user name or password")
        if not parts.hostname:
            raise ValueError(f"has no host name; use {schemes[1]}://host[:port]")
        if parts.port == 0:
            raise ValueError("port must be between 1 and 65535 (got 0)")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or fragment")
        netloc = _host_text(parts.hostname) + (f":{parts.port}" if parts.port is not None else "")
        path = parts.path.rstrip("/") or default_path
        return f"{scheme}://{netloc}{path}" + ("/" if trailing_slash else "")

    return check


def _region_or_url(region: str | None, url: str | None, wanted: str) -> None:
    """Exactly one of ``region`` and ``url`` must be given."""
    if region is None and url is None:
        raise _FieldError(f"give {wanted} or a url", "region")
    if region is not None and url is not None:
        raise _FieldError("give either region or url, not both", "url")


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
    return f"{_host_text(host)}:{port}"


def _aqara_path(value: str) -> str:
    text = value.strip()
    if not text.startswith("/"):
        text = "/" + text
    if any(c in text for c in "?# \t\n"):
        raise ValueError(f"must be a plain URL path such as /aqara/push (got {value!r})")
    return text


class AqaraCallbackConfig(_Model):
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


class AqaraRateLimitConfig(_Model):
    """The API call budget the bridge keeps to (free tier: 300 calls per 5 minutes)."""

    calls: Annotated[int, BeforeValidator(_no_bool), AfterValidator(_at_least(1))] = 300
    per_seconds: _PositiveFloat = 300.0


class AqaraCloudBackendConfig(_BackendBase):
    """An Aqara cloud account through the Aqara Open API v3 (intents, signed HTTPS calls)."""

    type: Literal["aqara_cloud"]
    name: Annotated[str, AfterValidator(_identifier)] = "aqara_cloud"
    region: Annotated[
        Literal["cn", "usa", "eu", "ru", "kr", "sg"] | None,
        BeforeValidator(_region(_AQARA_REGIONS, _AQARA_REGION_ALIASES)),
    ] = None
    """The account's region (cn, usa, eu, ru, kr, sg); or give ``url`` instead."""
    url: Annotated[str | None, AfterValidator(_http_url(('http', 'https'), AQARA_API_PATH))] = None
    """An explicit API URL (e.g. a simulator), instead of ``region``."""
    app_id: Annotated[str, AfterValidator(_not_blank)]
    key_id: Annotated[str, AfterValidator(_not_blank)]
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
        float, BeforeValidator(_no_bool), AfterValidator(_aqara_non_negative)
    ] = 30.0
    """Seconds between polls of every trait value; 0 = push only (needs ``callback``)."""
    rate_limit: AqaraRateLimitConfig = AqaraRateLimitConfig()
    request_timeout: _PositiveFloat = 10.0
    reconnect_max_delay: _PositiveFloat = 60.0

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
        path = value.expanduser()
        base = info.context.get("base_dir") if isinstance(info.context, dict) else None
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        return path

    @model_validator(mode="after")
    def _where_and_how(self) -> AqaraCloudBackendConfig:
        _region_or_url(self.region, self.url, "the account's region (cn, usa, eu, ru, kr, sg)")
        if self.poll_interval == 0 and self.callback is None:
            raise _FieldError("0 (push only) needs a callback section; nothing would report "
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


_TUYA_REGION_ALIASES = {"us-w": "us", "us-west": "us", "us-east": "us-e", "eu-west": "eu-w",
                        "eu-c": "eu", "europe": "eu", "china": "cn", "india": "in",
                        "singapore": "sg"}
_TUYA_REGIONS = ("cn", "us", "us-e", "eu", "eu-w", "in", "sg")


class TuyaBackendConfig(_BackendBase):
    """A Tuya cloud project (OpenAPI with HMAC-SHA256 signed requests and the message service)
    bridging every home of one app user."""

    type: Literal["tuya"]
    name: Annotated[str, AfterValidator(_identifier)] = "tuya"
    region: Annotated[
        Literal["cn", "us", "us-e", "eu", "eu-w", "in", "sg"] | None,
        BeforeValidator(_region(_TUYA_REGIONS, _TUYA_REGION_ALIASES)),
    ] = None
    """The project's data centre; or give ``url`` (and ``push_url``) instead."""
    url: Annotated[str | None, AfterValidator(_http_url(("http", "https")))] = None
    """An explicit OpenAPI base URL (e.g. the simulator), instead of ``region``."""
    push_url: Annotated[
        str | None, AfterValidator(_http_url(("ws", "wss"), trailing_slash=True))
    ] = None
    """The message service's base URL (default: the region's ``wss://mqe.…:8285/``)."""
    client_id: Annotated[str, AfterValidator(_not_blank)]
    """The cloud project's Access ID / Client ID."""
    secret: SecretStr
    """The cloud project's Access Secret / Client Secret."""
    uid: Annotated[str, AfterValidator(_not_blank)]
    """The app user whose homes are bridged (Cloud > Devices > Link App Account)."""
    push: bool = True
    """Take changes from the message service (polling runs only while it is down)."""
    push_topic: Literal["event", "event-test"] = "event"
    poll_interval: _PositiveFloat = 30.0
    """Seconds between status polls while the message service is down (or ``push: false``)."""
    request_timeout: _PositiveFloat = 10.0
    reconnect_max_delay: _PositiveFloat = 60.0
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
        _region_or_url(self.region, self.url, "the project's region (cn, us, us-e, eu, eu-w, in)")
        if self.push and self.region is None and self.push_url is None:
            raise _FieldError("with an explicit url, give push_url too (or push: false)",
                              "push_url")
        if self.push and len(self.secret.get_secret_value()) < 24:
            raise _FieldError("is too short for the message service (Tuya secrets have 32 "
                              "characters)", "secret")
        return self


# Adding a backend: define its model (a _BackendBase with ``type: Literal["..."]``) and add it
# to this union (one line); SUPPORTED_BACKENDS follows.
AnyBackendConfig = (
    StudioBackendConfig
    | AqaraCloudBackendConfig
    | TuyaBackendConfig
)
BackendConfig = Annotated[AnyBackendConfig, Field(discriminator="type")]
"""One entry of ``backends:``, chosen by its ``type``."""

SUPPORTED_BACKENDS: tuple[str, ...] = tuple(
    get_args(model.model_fields["type"].annotation)[0]
    for model in (get_args(AnyBackendConfig) or (AnyBackendConfig,))
)


class HomeAssistantConfig(_Model):
    """Home Assistant MQTT discovery."""

    enabled: bool = True
    discovery_prefix: Annotated[str, AfterValidator(_topic_prefix)] = "homeassistant"
    device_based: bool = True
    """One config message per device (Home Assistant 2024.11+); False: one per entity."""
    status_topic: Annotated[str, AfterValidator(_topic_prefix)] = "homeassistant/status"
    """Home Assistant's birth/will topic; ``online`` there makes the bridge re-announce."""


class HomieConfig(_Model):
    """Homie 5 convention output (for openHAB's native Homie support)."""

    enabled: bool = False
    root: Annotated[str, AfterValidator(_topic_prefix)] = "homie"


def _friendly_name(value: str | None) -> str | None:
    if value is None:
        return None
    if not value:
        raise ValueError("must not be empty")
    if value == "bridge":
        raise ValueError("'bridge' is reserved for the bridge's own topics")
    for char, label in (("+", "'+'"), ("#", "'#'"), ("/", "'/'"), ("\0", "a NUL character")):
        if char in value:
            raise ValueError(f"must not contain {label} (got {value!r})")
    if value.startswith("$"):
        raise ValueError(f"must not start with '$' (got {value!r})")
    return value


class DeviceOptions(_Model):
    """Per-device options, keyed by the hub's device ID."""

    name: Annotated[str | None, AfterValidator(_friendly_name)] = None
    """Friendly name used as the ``<device>`` topic level instead of the device ID."""
    exclude: bool = False
    """True: the bridge ignores this device (no topics, no writes)."""
    homeassistant: bool = True
    """False: no Home Assistant discovery for this device (its topics stay)."""


class BridgeOptions(_Model):
    """Behaviour of the bridge core."""

    write_window_ms: Annotated[
        int, BeforeValidator(_no_bool), AfterValidator(_int_range(0, 5000))
    ] = 50
    """Writes arriving within this window are coalesced into one hub call."""
    publish_unchanged: bool = False
    """Republish a trait's retained topic even when the value did not change."""
    device_state_topic: bool = True
    """Publish the JSON of all of a device's values on ``<base>/<device>``."""
    clear_stale_topics: bool = True
    """Once every backend delivered a complete snapshot, clear retained topics under the base
    topic of devices that no longer exist (renamed, excluded, removed while the bridge was down),
    and retained ``/set``/``/get`` commands."""


def _lower_choice(choices: tuple[str, ...], aliases: Mapping[str, str]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip().lower()
            text = aliases.get(text, text)
            if text in choices:
                return text
        listed = ", ".join(choices[:-1]) + " or " + choices[-1]
        raise ValueError(f"must be {listed} (got {value!r})")

    return check


class LogConfig(_Model):
    """Logging."""

    level: Annotated[
        Literal["debug", "info", "warning", "error"],
        BeforeValidator(_lower_choice(("debug", "info", "warning", "error"), {"warn": "warning"})),
    ] = "info"
    format: Annotated[
        Literal["console", "json"], BeforeValidator(_lower_choice(("console", "json"), {}))
    ] = "console"


_SECTIONS = ("mqtt", "homeassistant", "devices", "bridge", "log")


class Config(_Model):
    """The whole configuration file."""

    mqtt: MqttConfig = MqttConfig()
    backends: list[BackendConfig]
    homeassistant: HomeAssistantConfig = HomeAssistantConfig()
    homie: HomieConfig = HomieConfig()
    devices: dict[str, DeviceOptions] = Field(default_factory=dict)
    bridge: BridgeOptions = BridgeOptions()
    log: LogConfig = LogConfig()

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        """Empty sections mean defaults; device IDs become strings; backend types normalised."""
        if not isinstance(data, Mapping):
            return data
        new = {k: v for k, v in data.items() if not (k in _SECTIONS and v is None)}
        devices = new.get("devices")
        if isinstance(devices, Mapping):
            new["devices"] = {str(k): ({} if v is None else v) for k, v in devices.items()}
        backends = new.get("backends")
        if isinstance(backends, list):
            items = []
            for item in backends:
                if isinstance(item, Mapping) and isinstance(item.get("type"), str):
                    item = {**item, "type": item["type"].strip().lower().replace("-", "_")}
                items.append(item)
            new["backends"] = items
        return new

    @field_validator("backends", mode="after")
    @classmethod
    def _backends(cls, value: list[AnyBackendConfig]) -> list[AnyBackendConfig]:
        if not value:
            raise ValueError(
                "at least one backend is required (supported: "
                + ", ".join(SUPPORTED_BACKENDS)
                + ")"
            )
        seen: dict[str, int] = {}
        for index, backend in enumerate(value):
            if backend.name in seen:
                raise _FieldError(
                    f"{backend.name!r} is already used by backends[{seen[backend.name]}]; "
                    "give each backend a unique name",
                    index,
                    "name",
                )
            seen[backend.name] = index
        return value

    @model_validator(mode="after")
    def _unique_friendly_names(self) -> Config:
        owners: dict[str, str] = {}
        for device_id, options in self.devices.items():
            name = options.name
            if name is None:
                continue
            if name in owners:
                raise _FieldError(
                    f"{name!r} is already the name of device {owners[name]!r}",
                    "devices",
                    device_id,
                    "name",
                )
            if name != device_id and name in self.devices:
                raise _FieldError(
                    f"{name!r} is the ID of another configured device",
                    "devices",
                    device_id,
                    "name",
                )
            owners[name] = device_id
        return self

    def device_options(self, device_id: str) -> DeviceOptions:
        """The options of a device (defaults when the config does not mention it)."""
        return self.devices.get(device_id, _DEFAULT_DEVICE)

    def summary(self) -> dict[str, Any]:
        """Everything useful for the retained ``bridge/info`` topic, with no secrets."""
        mqtt = self.mqtt
        return {
            "mqtt": {
                "url": mqtt.url,
                "host": mqtt.host,
                "port": mqtt.port,
                "tls": mqtt.use_tls,
                "tls_insecure": bool(mqtt.tls and mqtt.tls.insecure),
                "base_topic": mqtt.base_topic,
                "qos": mqtt.qos,
                "version": mqtt.version,
                "client_id": mqtt.client_id,
                "username": mqtt.username,
                "authenticated": mqtt.password is not None,
                "keepalive": mqtt.keepalive,
                "max_queued": mqtt.max_queued,
            },
            "backends": [backend.summary() for backend in self.backends],
            "homeassistant": self.homeassistant.public_dict(),
            "homie": self.homie.public_dict(),
            "devices": {k: v.public_dict() for k, v in self.devices.items()},
            "bridge": self.bridge.public_dict(),
            "log": self.log.public_dict(),
        }


_DEFAULT_DEVICE = DeviceOptions()


# ---- environment substitution -----------------------------------------------------------------

_ENV_RE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_VAR_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$", re.DOTALL)


Sources = dict[Loc, list[tuple[str, str]]]
"""Where ``${ENV}`` substitution put a value: location -> [(variable name, value)]."""


def _substitute(
    node: Any, env: Mapping[str, str], loc: Loc, problems: list[tuple[Loc, str]],
    sources: Sources,
) -> Any:
    if isinstance(node, str):
        if "$" not in node:
            return node
        return _substitute_text(node, env, loc, problems, sources)
    if isinstance(node, dict):
        return {k: _substitute(v, env, (*loc, str(k)), problems, sources)
                for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, env, (*loc, i), problems, sources) for i, v in enumerate(node)]
    return node


def _substitute_text(
    text: str, env: Mapping[str, str], loc: Loc, problems: list[tuple[Loc, str]],
    sources: Sources,
) -> str:
    def replace(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole == "$${":
            return "${"
        inner = match.group(1)
        parsed = _VAR_RE.match(inner) if inner is not None else None
        if parsed is None:
            problems.append(
                (
                    loc,
                    "invalid ${...} reference; use ${NAME} or ${NAME:-default}, "
                    "and $${ for a literal ${",
                )
            )
            return ""
        name, default = parsed.group(1), parsed.group(2)
        value = env.get(name)
        if default is not None:
            value = value if value else default
        elif value is None:
            problems.append((loc, f"${{{name}}} is not set in the environment"))
            return ""
        sources.setdefault(loc, []).append((name, value))
        return value

    return _ENV_RE.sub(replace, text)


# ---- YAML -------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of silently keeping the last."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    """Build a mapping; a key given twice (not counting ``<<`` merges) is an error."""
    seen: set[Any] = set()
    for key_node, _value in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {str(key)!r}", key_node.start_mark
            )
        seen.add(key)
    loader.flatten_mapping(node)
    return {
        loader.construct_object(k, deep=True): loader.construct_object(v, deep=True)
        for k, v in node.value
    }


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _yaml_error(source: str, exc: yaml.YAMLError) -> ConfigError:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        detail = ", ".join(_one_line(p) for p in (exc.context, exc.problem) if p)
        what = f"could not parse YAML: {detail}"
        if mark is not None:
            return ConfigError(f"{source}: line {mark.line + 1}: {what}")
        return ConfigError(f"{source}: {what}")
    return ConfigError(f"{source}: could not parse YAML: {_one_line(str(exc))}")


# ---- error formatting -------------------------------------------------------------------------


def _format_loc(loc: Loc) -> str:
    out = ""
    for index, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif index == 1 and loc[0] == "devices":
            out += '["' + part + '"]'
        else:
            out += ("." if out else "") + part
    return out


def _clean_loc(loc: tuple[int | str, ...]) -> Loc:
    """Drop the discriminator tag pydantic inserts after a backend's list index."""
    if (
        len(loc) >= 3
        and loc[0] == "backends"
        and isinstance(loc[1], int)
        and loc[2] in SUPPORTED_BACKENDS
    ):
        return (*loc[:2], *loc[3:])
    return loc


def _shown(loc: Loc, value: Any, sources: Sources) -> str:
    """`` (got X)`` for harmless scalar inputs; nothing for secret-looking keys or long text,
    and only the variable's name for a value that came from the environment."""
    field = next((p for p in reversed(loc) if isinstance(p, str)), "")
    if is_secret_key(field):
        return ""
    if loc in sources:
        names = ", ".join(f"${{{name}}}" for name, _ in sources[loc])
        return f" (the value of {names} is not shown)"
    if isinstance(value, bool):
        return f" (got {str(value).lower()})"
    if isinstance(value, int | float):
        return f" (got {value})"
    if isinstance(value, str) and len(value) <= 40 and "\n" not in value:
        return f" (got {value!r})"
    if isinstance(value, list):
        return " (got a list)"
    if isinstance(value, dict):
        return " (got a mapping)"
    return ""


_PLAIN_MESSAGES = {
    "missing": "field required",
    "extra_forbidden": "unknown key",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "path_type": "must be a file path",
    "string_too_short": "must not be empty",
    "too_short": "must not be empty",
    "literal_error": "is not one of the allowed values",
    "frozen_instance": "cannot be changed",
}
_ECHO_INPUT = {
    "string_type",
    "int_type",
    "int_parsing",
    "int_from_float",
    "float_type",
    "float_parsing",
    "bool_type",
    "bool_parsing",
    "list_type",
    "dict_type",
    "model_type",
    "model_attributes_type",
    "literal_error",
}


def _format_error(error: Mapping[str, Any], sources: Sources) -> tuple[Loc, str]:
    loc = _clean_loc(tuple(error["loc"]))
    kind = error["type"]
    ctx = error.get("ctx") or {}
    supported = ", ".join(SUPPORTED_BACKENDS)
    if kind == "value_error" and isinstance(ctx.get("error"), _FieldError):
        err: _FieldError = ctx["error"]
        return (*loc, *err.loc), err.message
    if kind == "value_error":
        return loc, str(ctx.get("error", error.get("msg", "")))
    if kind == "union_tag_invalid":
        tag = ctx.get("tag", "")
        return (*loc, "type"), f"{tag!r} is not supported by this version (supported: {supported})"
    if kind == "union_tag_not_found":
        return (*loc, "type"), f"field required (supported: {supported})"
    message = _PLAIN_MESSAGES.get(kind)
    if message is None:
        msg = str(error.get("msg", kind))
        return loc, (msg[:1].lower() + msg[1:]) if msg else kind
    if kind in _ECHO_INPUT:
        message += _shown(loc, error.get("input"), sources)
    return loc, message


def _located(source: str, loc: Loc, message: str) -> str:
    where = _format_loc(loc)
    return f"{source}: {where}: {message}" if where else f"{source}: {message}"


# ---- entry points -----------------------------------------------------------------------------


def parse_config(
    text: str,
    source: str,
    env: Mapping[str, str] | None = None,
    *,
    base_dir: str | Path | None = None,
) -> Config:
    """Parse and validate YAML ``text``; ``source`` (usually the file name) prefixes errors.

    ``env`` defaults to ``os.environ``. Relative TLS file paths are resolved against ``base_dir``
    (default: the current directory).
    """
    if env is None:
        env = os.environ
    try:
        documents = list(yaml.load_all(text, Loader=_Loader))  # _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        raise _yaml_error(source, exc) from None
    documents = [d for d in documents if d is not None]
    if not documents:
        raise ConfigError(f"{source}: the file is empty; see config.example.yaml")
    if len(documents) > 1:
        raise ConfigError(
            f"{source}: the file must hold one YAML document (found {len(documents)})"
        )
    data = documents[0]
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
        raise ConfigError(
            f"{source}: the top level must be a mapping of sections (mqtt, backends, ...), "
            f"not {kind}; see config.example.yaml"
        )
    problems: list[tuple[Loc, str]] = []
    sources: Sources = {}
    data = _substitute(data, env, (), problems, sources)
    if problems:
        lines = [f"{source}: {msg} ({_format_loc(loc)})" for loc, msg in problems]
        raise ConfigError(lines[0], lines)
    context = {"base_dir": Path(base_dir) if base_dir is not None else None}
    try:
        return Config.model_validate(data, context=context)
    except ValidationError as exc:
        # A validator may quote its input: values from the environment or under a secret key
        # are masked wherever they appear, not only where pydantic reports them.
        hidden = Redactor()
        hidden.register_many(value for found in sources.values() for _, value in found)
        hidden.register_many(secret_key_values(data))
        lines = [hidden.redact(_located(source, *_format_error(e, sources)))
                 for e in exc.errors()]
        raise ConfigError(lines[0], lines) from None


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read, parse and validate the config file at ``path`` (see :func:`parse_config`)."""
    source = str(path)
    file = Path(path).expanduser()
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{source}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the file ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    return parse_config(text, source, env, base_dir=file.resolve().parent)
