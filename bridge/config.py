"""Configuration: YAML with ``${ENV}`` substitution, validated into frozen pydantic models.

Every problem surfaces as one :class:`ConfigError` whose ``str`` is a single line naming the file
and the path of the offending key, e.g. ``config.yaml: mqtt.qos: must be 0, 1 or 2 (got 5)``.
Error messages never contain a secret's value.

Environment references are substituted in string scalars *after* YAML parsing, so a variable's
value can never inject YAML: ``${VAR}``, ``${VAR:-default}`` (default when unset or empty) and
``$${`` for a literal ``${``.
"""

from __future__ import annotations

import functools
import hashlib
import operator
import os
import re
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bridge.backends.registry import KINDS
from bridge.config_base import (
    BackendConfigBase,
    FieldError,
    Loc,
    Model,
    config_path,
    host_text,
    int_range,
    no_bool,
    split_url,
)
from bridge.secrets import Redactor, is_secret_key, secret_key_values

__all__ = [
    "SUPPORTED_BACKENDS",
    "BackendConfig",
    "BridgeOptions",
    "Config",
    "ConfigError",
    "DeviceOptions",
    "FrontendConfig",
    "HomeAssistantConfig",
    "LogConfig",
    "MqttConfig",
    "TlsConfig",
    "load_config",
    "parse_config",
]



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


# ---- models -----------------------------------------------------------------------------------


class TlsConfig(Model):
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
        path = config_path(value, info)
        if not path.is_file():
            raise ValueError(f"file not found: {path}")
        return path

    @model_validator(mode="after")
    def _key_needs_cert(self) -> TlsConfig:
        if self.key is not None and self.cert is None:
            raise FieldError("a client key needs a client certificate (tls.cert)", "key")
        return self


_MQTT_SCHEMES = {"mqtt": False, "tcp": False, "mqtts": True, "ssl": True, "tls": True}


def _mqtt_url(value: str) -> str:
    """Normalise to ``mqtt://host:port`` or ``mqtts://host:port``."""
    value = value.strip()
    if "://" not in value:
        value = "mqtt://" + value
    parts = split_url(value)
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
    return f"{'mqtts' if tls else 'mqtt'}://{host_text(host)}:{port}"


def _mqtt_urls(value: Any) -> Any:
    """Several brokers: a YAML list, or one string of comma-separated URLs, joined with ``,``
    after each is normalised (the first is the primary; see :attr:`MqttConfig.urls`)."""
    items = value if isinstance(value, list) else (
        value.split(",") if isinstance(value, str) else None)
    if items is None:
        return value
    urls = [_mqtt_url(str(item)) for item in items if str(item).strip()]
    if not urls:
        raise ValueError("names no broker; use mqtt://host[:port]")
    if len({url.split("://")[0] for url in urls}) > 1:
        raise ValueError("mixes mqtt:// and mqtts://; every broker of the list must use the same")
    return ",".join(urls)


def _instance_id(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
        raise ValueError(f"may only contain A-Z a-z 0-9 _ - (at most 64 of them; got {value!r})")
    return value


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


class MqttConfig(Model):
    """The MQTT broker connection."""

    url: Annotated[str, BeforeValidator(_mqtt_urls)] = "mqtt://127.0.0.1:1883"
    """``mqtt://host[:port]`` (default port 1883) or ``mqtts://host[:port]`` (TLS, 8883); a list
    (or comma-separated) names several brokers, tried in order (the nodes of a cluster, or a
    primary and a fallback)."""
    topic_style: Annotated[
        Literal["standard", "portable"],
        BeforeValidator(lambda v: v.strip().lower() if isinstance(v, str) else v),
    ] = "standard"
    """``portable``: no ``.``, whitespace, ``*`` or ``>`` in topic levels from device data, for
    NATS and RabbitMQ (see README, "Brokers")."""
    base_topic: Annotated[str, AfterValidator(_topic_prefix)] = "aqara"
    username: Annotated[str | None, BeforeValidator(_empty_to_none)] = None
    password: Annotated[SecretStr | None, BeforeValidator(_empty_to_none)] = None
    tls: TlsConfig | None = None
    qos: Annotated[Literal[0, 1, 2], BeforeValidator(_qos)] = 1
    client_id: Annotated[str | None, BeforeValidator(_empty_to_none)] = None
    """None: the caller generates a unique one."""
    version: Annotated[Literal["5", "3.1.1"], BeforeValidator(_mqtt_version)] = "5"
    keepalive: Annotated[int, BeforeValidator(no_bool), AfterValidator(int_range(2, 3600))] = 60
    """Seconds; with ``instance.failover`` the default is 4 (the lease is 1.5 x keepalive)."""
    max_queued: Annotated[
        int, BeforeValidator(no_bool), AfterValidator(int_range(100, 60000))
    ] = 10000
    """Unacknowledged messages before publishing parks (paho's message ids stop at 65535)."""

    @model_validator(mode="before")
    @classmethod
    def _userinfo_from_url(cls, data: Any) -> Any:
        """Move ``user:password@`` out of the URL into ``username``/``password``."""
        if not isinstance(data, Mapping) or not isinstance(data.get("url"), str):
            return data
        url: str = data["url"].strip()
        if "," in url:
            return data  # several brokers: credentials go in username/password
        probe = url if "://" in url else "mqtt://" + url
        try:
            parts = urlsplit(probe)
        except ValueError:
            return data
        if "@" not in parts.netloc:
            return data
        userinfo, hostport = parts.netloc.rsplit("@", 1)
        if data.get("username") is not None or data.get("password") is not None:
            raise FieldError(
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
    def urls(self) -> list[str]:
        """Every broker named, in order (the first is :attr:`host`/:attr:`port`)."""
        return self.url.split(",")

    @property
    def brokers(self) -> list[tuple[str, int]]:
        """(host, port) of every broker named, in order."""
        default = 8883 if self.use_tls else 1883
        return [(parts.hostname or "", parts.port or default)
                for parts in map(urlsplit, self.urls)]

    @property
    def _parts(self) -> SplitResult:
        return urlsplit(self.urls[0])

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



if TYPE_CHECKING:
    BackendConfig = BackendConfigBase
else:  # pydantic picks the model by ``type``; the kinds come from bridge.backends.registry
    BackendConfig = Annotated[functools.reduce(operator.or_, (k.config for k in KINDS)),
                              Field(discriminator="type")]
"""One entry of ``backends:``, chosen by its ``type``."""

SUPPORTED_BACKENDS: tuple[str, ...] = tuple(
    get_args(kind.config.model_fields["type"].annotation)[0] for kind in KINDS
)


class HomeAssistantConfig(Model):
    """Home Assistant MQTT discovery."""

    enabled: bool = True
    discovery_prefix: Annotated[str, AfterValidator(_topic_prefix)] = "homeassistant"
    device_based: bool = True
    """One config message per device (Home Assistant 2024.11+); False: one per entity."""
    status_topic: Annotated[str, AfterValidator(_topic_prefix)] = "homeassistant/status"
    """Home Assistant's birth/will topic; ``online`` there makes the bridge re-announce."""


class InstanceConfig(Model):
    """Who this bridge is among several on one broker (see README, "Several instances")."""

    id: Annotated[str | None, BeforeValidator(_empty_to_none), AfterValidator(_instance_id)] = None
    """Unique per bridge on a broker; default: the base topic (``aqara``), so a single bridge
    needs none. It names the Homie root device (``aqara-mqtt-<id>``, ``aqara-mqtt`` for
    ``aqara``) and is how two bridges on one base topic tell each other apart."""
    failover: bool = False
    """Run as one member of an active/standby pair (or more): the members share one instance
    configuration; one serves the hubs, the others stand by (see README, "Failover")."""
    member: Annotated[str | None, BeforeValidator(_empty_to_none),
                      AfterValidator(_instance_id)] = None
    """This process's name among the members; default: the host name."""


def _homie_versions(value: tuple[int, ...]) -> tuple[int, ...]:
    if not value:
        raise ValueError("name at least one Homie version (4 and/or 5)")
    if len(set(value)) != len(value):
        raise ValueError("lists a version twice")
    return value


class HomieConfig(Model):
    """Homie convention output: Homie 5, and/or Homie 4 (what openHAB's Homie binding reads)."""

    enabled: bool = False
    root: Annotated[str, AfterValidator(_topic_prefix)] = "homie"
    versions: Annotated[tuple[Literal[4, 5], ...], AfterValidator(_homie_versions)] = (5,)
    """The major versions published, each under its own topics (``<root>/5/…``, ``<root>/…``)."""
    version_file: Path | None = None
    """Where the description versions are kept, so they grow across restarts even when the
    clock does not (e.g. ``${STATE_DIRECTORY}/homie-versions.json``); relative paths are
    relative to the config file."""

    @field_validator("version_file", mode="after")
    @classmethod
    def _version_file_path(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else config_path(value, info)


def _base_path(value: str) -> str:
    """A URL path prefix for a reverse proxy: empty, or ``/a/b`` (no trailing slash)."""
    value = value.rstrip("/")
    if value and (not value.startswith("/") or any(c in value for c in "?#% \\\"'<>")):
        raise ValueError(f"must be a path such as /aqara (got {value!r})")
    return value


class FrontendConfig(Model):
    """The web page served by the daemon (``bridge.web``)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    """Listen address; the page controls devices: keep it on loopback or set a token."""
    port: Annotated[int, BeforeValidator(no_bool), AfterValidator(int_range(0, 65535))] = 8088
    """0: any free port (the daemon logs the URL)."""
    token: Annotated[SecretStr | None, BeforeValidator(_empty_to_none)] = None
    """When set, every request and the WebSocket need it (see README, "Web page")."""
    base_path: Annotated[str, AfterValidator(_base_path)] = ""
    """The path the page lives under behind a reverse proxy that does not strip it."""
    history: Annotated[int, BeforeValidator(no_bool), AfterValidator(int_range(1, 10_000))] = 500
    """How many of the last events, log lines and answers the daemon keeps (in memory) for a
    page opened later."""


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


class DeviceOptions(Model):
    """Per-device options, keyed by the hub's device ID."""

    name: Annotated[str | None, AfterValidator(_friendly_name)] = None
    """Friendly name used as the ``<device>`` topic level instead of the device ID."""
    exclude: bool = False
    """True: the bridge ignores this device (no topics, no writes)."""
    homeassistant: bool = True
    """False: no Home Assistant discovery for this device (its topics stay)."""


class BridgeOptions(Model):
    """Behaviour of the bridge core."""

    write_window_ms: Annotated[
        int, BeforeValidator(no_bool), AfterValidator(int_range(0, 5000))
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


class LogConfig(Model):
    """Logging."""

    level: Annotated[
        Literal["debug", "info", "warning", "error"],
        BeforeValidator(_lower_choice(("debug", "info", "warning", "error"), {"warn": "warning"})),
    ] = "info"
    format: Annotated[
        Literal["console", "json"], BeforeValidator(_lower_choice(("console", "json"), {}))
    ] = "console"


FAILOVER_KEEPALIVE = 4
"""The keepalive of a failover member when none is configured: a 6 s lease, takeover < 10 s."""

_SECTIONS = ("mqtt", "homeassistant", "devices", "bridge", "log", "frontend", "instance")


class Config(Model):
    """The whole configuration file."""

    mqtt: MqttConfig = MqttConfig()
    instance: InstanceConfig = InstanceConfig()
    backends: list[BackendConfig]
    homeassistant: HomeAssistantConfig = HomeAssistantConfig()
    homie: HomieConfig = HomieConfig()
    devices: dict[str, DeviceOptions] = Field(default_factory=dict)
    bridge: BridgeOptions = BridgeOptions()
    log: LogConfig = LogConfig()
    frontend: FrontendConfig = FrontendConfig()

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
    def _backends(cls, value: list[BackendConfig]) -> list[BackendConfig]:
        if not value:
            raise ValueError(
                "at least one backend is required (supported: "
                + ", ".join(SUPPORTED_BACKENDS)
                + ")"
            )
        seen: dict[str, int] = {}
        for index, backend in enumerate(value):
            if backend.name in seen:
                raise FieldError(
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
                raise FieldError(
                    f"{name!r} is already the name of device {owners[name]!r}",
                    "devices",
                    device_id,
                    "name",
                )
            if name != device_id and name in self.devices:
                raise FieldError(
                    f"{name!r} is the ID of another configured device",
                    "devices",
                    device_id,
                    "name",
                )
            owners[name] = device_id
        return self

    @property
    def instance_id(self) -> str:
        """``instance.id``, else the base topic with each ``/`` (and anything an id cannot
        hold) as ``_``: ``aqara`` for a default install."""
        return self.instance.id or re.sub(r"[^A-Za-z0-9_-]", "_", self.mqtt.base_topic)[:64]

    @property
    def keepalive(self) -> int:
        """The MQTT keepalive in use: ``mqtt.keepalive``, whose default is
        :data:`FAILOVER_KEEPALIVE` for a failover member (the takeover time follows from it)."""
        if self.instance.failover and "keepalive" not in self.mqtt.model_fields_set:
            return FAILOVER_KEEPALIVE
        return self.mqtt.keepalive

    @property
    def member(self) -> str:
        """``instance.member``, else this machine's host name (as an id can hold it)."""
        return self.instance.member or re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:64]

    def hub_keys(self) -> list[str]:
        """A fingerprint of each hub this bridge serves (backend kind, name and address, no
        secret): two bridges with none in common are two instances, not two runs of one."""
        return sorted(hashlib.sha256(backend.hub_key().encode()).hexdigest()[:12]
                      for backend in self.backends)

    def device_options(self, device_id: str) -> DeviceOptions:
        """The options of a device (defaults when the config does not mention it)."""
        return self.devices.get(device_id, _DEFAULT_DEVICE)

    def summary(self) -> dict[str, Any]:
        """Everything useful for the retained ``bridge/info`` topic, with no secrets."""
        mqtt = self.mqtt
        return {
            "mqtt": {
                "url": mqtt.urls[0],
                "urls": mqtt.urls,
                "topic_style": mqtt.topic_style,
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
                "keepalive": self.keepalive,
                "max_queued": mqtt.max_queued,
            },
            "instance": {"id": self.instance_id, **({"failover": True, "member": self.member}
                                                    if self.instance.failover else {})},
            "backends": [backend.summary() for backend in self.backends],
            "homeassistant": self.homeassistant.public_dict(),
            "homie": self.homie.public_dict(),
            "devices": {k: v.public_dict() for k, v in self.devices.items()},
            "bridge": self.bridge.public_dict(),
            "log": self.log.public_dict(),
            "frontend": self.frontend.public_dict(),
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
    if kind == "value_error" and isinstance(ctx.get("error"), FieldError):
        err: FieldError = ctx["error"]
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
