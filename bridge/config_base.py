"""What every config model is built from: the frozen base model, small validators, and the
base of every backend's config model (each backend keeps its own in its folder).

Validators raise ``ValueError`` (pydantic places them) or :class:`FieldError` (which names the
key it belongs to); :mod:`bridge.config` turns both into one line a user understands.
"""

from __future__ import annotations

import difflib
import re
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    SecretStr,
    ValidationInfo,
    model_validator,
)

from bridge.secrets import is_secret_key

Loc = tuple[str | int, ...]


class FieldError(ValueError):
    """A validator error that knows where (relative to the validated object) it belongs."""

    def __init__(self, message: str, *loc: str | int) -> None:
        super().__init__(message)
        self.message = message
        self.loc: Loc = loc


# ---- small validators -------------------------------------------------------------------------


def no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"must be a number (got {str(value).lower()})")
    return value


def int_range(low: int, high: int) -> Callable[[int], int]:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high} (got {value})")
        return value

    return check


def config_path(value: Path, info: ValidationInfo) -> Path:
    """``value`` with ``~`` expanded and, when relative, taken from the config file's folder."""
    path = value.expanduser()
    base = info.context.get("base_dir") if isinstance(info.context, dict) else None
    return Path(base) / path if not path.is_absolute() and base is not None else path


def positive(value: float) -> float:
    if value <= 0:
        raise ValueError(f"must be greater than 0 (got {value:g})")
    return value


def at_least(low: int) -> Callable[[int], int]:
    def check(value: int) -> int:
        if value < low:
            raise ValueError(f"must be at least {low} (got {value})")
        return value

    return check


PositiveFloat = Annotated[float, BeforeValidator(no_bool), AfterValidator(positive)]


_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def identifier(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(f"must be 1 to 64 letters, digits, '_' or '-' (got {value!r})")
    return value


def host_text(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def split_url(value: str) -> SplitResult:
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


class Model(BaseModel):
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
                    raise FieldError(f"unknown key ({hint})", name)
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
    if isinstance(value, Model):
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


class BackendConfigBase(Model):
    """Common to every backend: ``type`` (the discriminator) and a unique ``name``."""

    type: str
    name: Annotated[str, AfterValidator(identifier)]

    def summary(self) -> dict[str, Any]:
        """Non-secret facts for ``bridge/info``."""
        return self.public_dict()

    def hub_key(self) -> str:
        """What identifies the hub or account served (kind, name, address; no secret)."""
        fields = [str(getattr(self, key)) for key in _HUB_FIELDS
                  if getattr(self, key, None) is not None]
        return "|".join([self.type, self.name, *fields])


    def hub_address(self) -> tuple[str, int] | None:
        """Host and port of the hub or cloud API (a standby checks it can reach them)."""
        url = getattr(self, "api_url", None) or getattr(self, "url", None)
        if not isinstance(url, str):
            return None
        parts = urllib.parse.urlsplit(url)
        default = 443 if parts.scheme in ("https", "wss") else 80
        try:
            port = parts.port or default
        except ValueError:
            return None
        return (parts.hostname, port) if parts.hostname else None


_HUB_FIELDS = ("url", "region", "app_id", "client_id", "uid", "account")
"""The fields of a backend's config that say which hub or cloud account it serves."""


def not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


def region_name(regions: Iterable[str], aliases: Mapping[str, str]) -> Callable[[Any], Any]:
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


def http_url(schemes: tuple[str, str], default_path: str = "",
              trailing_slash: bool = False) -> Callable[[str | None], str | None]:
    """A validator for ``scheme://host[:port][/path]`` (``schemes[1]`` when none is given);
    no credentials, query or fragment; an empty path becomes ``default_path``."""

    def check(value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip()
        if "://" not in text:
            text = f"{schemes[1]}://{text}"
        parts = split_url(text)
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
        netloc = host_text(parts.hostname) + (f":{parts.port}" if parts.port is not None else "")
        path = parts.path.rstrip("/") or default_path
        return f"{scheme}://{netloc}{path}" + ("/" if trailing_slash else "")

    return check


def region_or_url(region: str | None, url: str | None, wanted: str) -> None:
    """Exactly one of ``region`` and ``url`` must be given."""
    if region is None and url is None:
        raise FieldError(f"give {wanted} or a url", "region")
    if region is not None and url is not None:
        raise FieldError("give either region or url, not both", "url")
