"""Logging: structlog over the stdlib, console or JSON lines, with secrets always redacted.

Every record, whether from a :func:`get_logger` logger or a third-party stdlib logger (paho,
aiohttp, websockets, amqtt), goes through the same processors to one handler; the last step before
rendering masks registered secrets (:mod:`bridge.secrets`) in every string, exception text and
traceback, and the values of secret-looking keys (``token=...``, ``password=...``).

Levels: the project's loggers (``bridge.*`` and any name passed to :func:`get_logger`) log at
the configured level; other libraries at WARNING and above (or the configured level if higher).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import IO, Any, Literal

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from bridge.secrets import REDACTOR, is_secret_key

__all__ = ["configure_logging", "get_logger", "redact_processor", "set_level"]

LogFormat = Literal["console", "json"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

_OWN_ROOT = "bridge"
"""The stdlib logger that parents the project's loggers."""

_lock = threading.Lock()
_handler: logging.Handler | None = None
_level = logging.INFO
_own_names: set[str] = {_OWN_ROOT}
_structlog_ready = False


def _level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    try:
        return _LEVELS[level.strip().lower()]
    except KeyError:
        raise ValueError(
            f"unknown log level {level!r} (use debug, info, warning or error)"
        ) from None


def _plain(value: Any) -> Any:
    """Strings, numbers, None, dicts and lists stay; anything else becomes its text."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}" if str(value) else type(value).__name__
    if isinstance(value, bytes):
        return repr(value)
    return str(value)


_FIRST_KEYS = ("timestamp", "level", "logger", "event")


def redact_processor(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secrets in every value, and secret-keyed values entirely.

    Non-JSON values (exceptions, paths, objects) are turned into text first, so what the
    renderer prints has been through the redactor.
    """
    out: EventDict = {}
    for key in _FIRST_KEYS:  # a stable, readable order for JSON lines
        if key in event_dict:
            out[key] = None
    for key, value in event_dict.items():
        if key.startswith("_"):  # structlog internals such as _record / _from_structlog
            out[key] = value
        elif is_secret_key(key) and value is not None and not isinstance(value, bool):
            out[key] = "***"
        else:
            out[key] = REDACTOR.redact_obj(_plain(value))
    return out


def _shared_processors() -> list[Processor]:
    """Adds the fields every line carries (for structlog and foreign stdlib records alike)."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _ensure_structlog() -> None:
    """Configure structlog once; its chain never changes (formatting lives in the handler)."""
    global _structlog_ready
    if _structlog_ready:
        return
    with _lock:
        if _structlog_ready:
            return
        structlog.configure(
            processors=[
                structlog.stdlib.filter_by_level,
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.add_log_level,
                structlog.stdlib.PositionalArgumentsFormatter(),
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.StackInfoRenderer(),
                structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
            ],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
            cache_logger_on_first_use=True,
        )
        _structlog_ready = True


def _renderer(fmt: LogFormat, stream: IO[str]) -> Processor:
    if fmt == "json":
        return structlog.processors.JSONRenderer(default=str)
    isatty = getattr(stream, "isatty", None)
    colors = bool(isatty and isatty()) and "NO_COLOR" not in os.environ
    return structlog.dev.ConsoleRenderer(
        colors=colors, exception_formatter=structlog.dev.plain_traceback
    )


def _apply_levels(level: int) -> None:
    logging.getLogger().setLevel(max(level, logging.WARNING))
    for name in _own_names:
        logging.getLogger(name).setLevel(level)


def configure_logging(
    level: str = "info",
    fmt: LogFormat = "console",
    stream: IO[str] | None = None,
    *,
    secrets: Iterable[str] = (),
) -> None:
    """Send all logging to ``stream`` (default ``sys.stderr``) as ``console`` text or ``json``.

    ``secrets`` are registered with the process-wide redactor first (e.g.
    ``config.secret_values()``). Safe to call again: the previous handler is replaced.
    """
    global _handler, _level
    if fmt not in ("console", "json"):
        raise ValueError(f"unknown log format {fmt!r} (use console or json)")
    number = _level_number(level)
    REDACTOR.register_many(secrets)
    _ensure_structlog()
    target = stream if stream is not None else sys.stderr
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_processor,
            _renderer(fmt, target),
        ],
    )
    handler = logging.StreamHandler(target)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    with _lock:
        if _handler is not None:
            root.removeHandler(_handler)
        root.addHandler(handler)
        _handler = handler
        _level = number
        _apply_levels(number)


def set_level(level: str | int) -> None:
    """Change the level of the project's loggers at runtime (others stay at WARNING+)."""
    global _level
    number = _level_number(level)
    with _lock:
        _level = number
        _apply_levels(number)


def get_logger(name: str = _OWN_ROOT, **initial_values: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger named ``name`` (use ``__name__``) logging at the configured level."""
    _ensure_structlog()
    if name != _OWN_ROOT and not name.startswith(_OWN_ROOT + "."):
        with _lock:
            if name not in _own_names:
                _own_names.add(name)
                logging.getLogger(name).setLevel(_level)
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name, **initial_values)
    return logger
