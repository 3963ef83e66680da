"""Trait values: hub wire ↔ model, model → MQTT payload, ``/set`` payload → validated model value.

Model values (see :mod:`bridge.model`): ``bool`` for BOOLEAN, ``int``/``float`` for NUMBER (``int``
when the spec :attr:`~bridge.model.TraitSpec.is_integer`, otherwise ``float``), ``str`` for
STRING, ``str`` for ENUM (the enum's wire ``value``, e.g. ``"1"``) and parsed JSON for OTHER.
``None`` means "no known value".

Everything here is pure and total on model values: encoders never raise; decoders raise
:class:`ValueError` (:func:`from_wire`) or :class:`WriteRejected` (:func:`decode_set`,
:func:`decode_value`, :func:`decode_device_set`).
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any, NoReturn

from bridge.model import TraitSpec, TraitType

MAX_SET_PAYLOAD = 64 * 1024
"""The largest ``/set`` payload accepted, in bytes."""

_NUMBER_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_TRUE_WORDS = frozenset({"true", "1", "on"})
_FALSE_WORDS = frozenset({"false", "0", "off"})
_INT_JSON_LIMIT = 2**63


# ---- numbers ------------------------------------------------------------------------------------


def plain_number(number: int | float) -> str:
    """A number in plain decimal: no exponent, no trailing ``.0``, shortest float digits.

    ``1e-07`` → ``0.0000001``, ``1e21`` → ``1000000000000000000000``, ``5.0`` → ``5``,
    ``-0.0`` → ``0``. Non-finite floats (never a model value) give ``null``.
    """
    if isinstance(number, bool):
        return "true" if number else "false"
    if isinstance(number, int):
        return str(number)
    if not math.isfinite(number):
        return "null"
    text = repr(number)
    if "e" in text:
        text = format(Decimal(text), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def json_number(number: int | float) -> int | float | None:
    """A number ready for JSON: integral floats become ints (``21.0`` → ``21``), ``-0.0`` → ``0``.

    Non-finite floats give None (JSON has no NaN/Infinity).
    """
    if isinstance(number, int):
        return number
    if not math.isfinite(number):
        return None
    if number.is_integer() and abs(number) < _INT_JSON_LIMIT:
        return int(number)
    return number


def _number_from_text(text: str) -> int | float:
    """Parse decimal number text strictly (no ``_``, hex, NaN or Infinity); ValueError if not."""
    if not _NUMBER_TEXT.fullmatch(text):
        raise ValueError(f"{_show(text)} is not a number")
    try:
        if "." in text or "e" in text or "E" in text:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError(f"{_show(text)} is out of range")
            return value
        return int(text)
    except (ValueError, OverflowError):
        raise ValueError(f"{_show(text)} is out of range") from None


def _as_spec_number(spec: TraitSpec, number: int | float) -> int | float:
    """int for integer specs when integral, otherwise float; ValueError when out of range."""
    if spec.is_integer:
        if isinstance(number, float) and number.is_integer():
            return int(number)
        return number
    try:
        return float(number)
    except OverflowError:
        raise ValueError(f"{_show(number)} is out of range") from None


# ---- helpers ------------------------------------------------------------------------------------


def _show(value: Any) -> str:
    """A value quoted for a message, shortened."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, int | float):
        text = plain_number(value)
        return text[:60] + "…" if len(text) > 60 else text
    if isinstance(value, str):
        text = value
        return f"'{text[:60]}…'" if len(text) > 60 else f"'{text}'"
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=repr)
    except (ValueError, TypeError, RecursionError):
        text = repr(value)
    return text[:60] + "…" if len(text) > 60 else text


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _enum_key(spec: TraitSpec, value: Any) -> str | None:
    for option in spec.enums:
        if option.value == value:
            return option.key
    return None


# ---- hub → model --------------------------------------------------------------------------------


def from_wire(spec: TraitSpec, raw: Any) -> Any:
    """Convert what a hub sent into the model value for ``spec``, tolerantly.

    None stays None (no known value). Raises ValueError with a clear message when the value
    cannot be converted (callers log and skip it).
    """
    if raw is None:
        return None
    kind = spec.type
    if kind is TraitType.BOOLEAN:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int | float) and raw in (0, 1):
            return bool(raw)
        if isinstance(raw, str):
            word = raw.strip().lower()
            if word in _TRUE_WORDS:
                return True
            if word in _FALSE_WORDS:
                return False
        raise ValueError(f"{_show(raw)} is not a boolean")
    if kind is TraitType.NUMBER:
        if isinstance(raw, bool):
            raise ValueError(f"{_show(raw)} is not a number")
        if isinstance(raw, int | float):
            if isinstance(raw, float) and not math.isfinite(raw):
                raise ValueError(f"{_show(raw)} is not a finite number")
            return _as_spec_number(spec, raw)
        if isinstance(raw, str):
            return _as_spec_number(spec, _number_from_text(raw.strip()))
        raise ValueError(f"{_show(raw)} is not a number")
    if kind is TraitType.STRING:
        if isinstance(raw, str):
            return raw
        if isinstance(raw, bool | int | float):
            return plain_number(raw)
        raise ValueError(f"{_show(raw)} is not a string")
    if kind is TraitType.ENUM:
        if isinstance(raw, str):
            if spec.enums and not any(o.value == raw for o in spec.enums):
                for option in spec.enums:  # a hub sending the label instead of the value
                    if option.key == raw:
                        return option.value
            return raw
        if isinstance(raw, int) and not isinstance(raw, bool):
            return str(raw)
        if isinstance(raw, float) and math.isfinite(raw) and raw.is_integer():
            return str(int(raw))
        raise ValueError(f"{_show(raw)} is not an enum value")
    # OTHER: parsed JSON; a string holding JSON is parsed, any other string is kept as it is.
    if isinstance(raw, str):
        try:
            return _DECODER.decode(raw)
        except (ValueError, RecursionError):
            return raw
    try:
        _dumps(raw)
    except (ValueError, TypeError, RecursionError):
        raise ValueError(f"{_show(raw)} is not JSON") from None
    return raw


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number")


# ---- model → MQTT / hub -------------------------------------------------------------------------


def to_payload(spec: TraitSpec, value: Any) -> str:
    """The MQTT payload text for a model value (see :func:`encode_payload`)."""
    return encode_payload(spec, value)[0]


def string_label(spec: TraitSpec, value: str) -> str:
    """A string value as people read it: an ENUM's option ``key`` label, else the string."""
    if spec.type is TraitType.ENUM:
        key = _enum_key(spec, value)
        if key is not None:
            return key
    return value


def encode_payload(spec: TraitSpec, value: Any) -> tuple[str, bool]:
    """The MQTT payload text for a model value, and whether it is JSON (else plain text).

    Booleans ``true``/``false``; numbers plain decimal (:func:`plain_number`); strings as they
    are; ENUM the option's ``key`` label when the value is one of the options, else the raw value;
    objects/arrays compact JSON; None ``null``. An empty payload would delete a retained message,
    so the empty string is published as the JSON string ``""``, and so is every string that
    starts with a double quote (``"a"`` → ``"\"a\""``) so the two cannot be confused; ``/set``
    unquotes JSON strings, so every payload round-trips.
    """
    if isinstance(value, str):
        text = string_label(spec, value)
        if not text or text[0] == '"':
            return json.dumps(text, ensure_ascii=False), True
        return text, False
    if value is None:
        return "null", True
    if isinstance(value, bool | int | float):
        return plain_number(value), True
    try:
        return _dumps(value), True
    except (ValueError, TypeError, RecursionError):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str), True


def to_json_value(spec: TraitSpec, value: Any) -> Any:
    """The model value for the device's JSON document: like :func:`to_payload`, JSON-typed.

    ENUM values become the key label, numbers stay numbers (:func:`json_number`).
    """
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return json_number(value)
    if isinstance(value, str) and spec.type is TraitType.ENUM:
        key = _enum_key(spec, value)
        return value if key is None else key
    return value


def to_studio_wire(spec: TraitSpec, value: Any) -> Any:
    """Typed JSON for Studio's ``ExecuteTraitRequest``: bool, number, enum value string, str,
    object/array."""
    kind = spec.type
    if kind is TraitType.BOOLEAN:
        return value
    if kind is TraitType.NUMBER and isinstance(value, int | float) and not isinstance(value, bool):
        if spec.is_integer and isinstance(value, float) and value.is_integer():
            return int(value)
        return value
    if kind is TraitType.ENUM or kind is TraitType.STRING:
        return value if isinstance(value, str) else to_string_wire(spec, value)
    return value


def to_string_wire(spec: TraitSpec, value: Any) -> str:
    """The Aqara cloud's string encoding: ``1``/``0`` for booleans, plain decimal numbers, the
    enum wire value, strings as they are, JSON text for objects/arrays; None gives ``""``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return plain_number(value)
    if isinstance(value, str):
        return value
    return to_payload(spec, value)


# ---- MQTT /set → model --------------------------------------------------------------------------


class WriteRejected(Exception):
    """A write that is not sent to the hub; ``reason`` is a sentence for the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_MISSING: Any = object()


def _for(where: str) -> str:
    return f" for {where}" if where else ""


def _text(payload: bytes | str, where: str) -> str:
    """The payload as text, after the size and UTF-8 checks; an empty payload is rejected."""
    try:
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
    except UnicodeEncodeError:
        raise WriteRejected(f"payload{_for(where)} is not valid UTF-8") from None
    if len(data) > MAX_SET_PAYLOAD:
        raise WriteRejected(
            f"payload{_for(where)} is {len(data)} bytes, more than the limit of {MAX_SET_PAYLOAD}"
        )
    if not data:
        raise WriteRejected(f"empty payload{_for(where)}")
    if isinstance(payload, str):
        return payload
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise WriteRejected(f"payload{_for(where)} is not valid UTF-8") from None


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


_JSON_START = frozenset('{["-0123456789')
_JSON_WORDS = frozenset({"true", "false", "null"})


def _loads(text: str) -> Any:
    """Parsed JSON (NaN, Infinity and overflowing numbers refused), or _MISSING if not JSON.

    ``text`` is stripped; text that cannot start a JSON value (``ON``, ``toggle``) skips the
    parser, whose errors are slow.
    """
    if text[:1] not in _JSON_START and text not in _JSON_WORDS:
        return _MISSING
    try:
        return _DECODER.decode(text)
    except (ValueError, RecursionError):
        return _MISSING


def _unwrap(spec: TraitSpec, value: Any) -> Any:
    """``{"value": x}`` → x (for OTHER only when x is an object or array)."""
    if isinstance(value, dict) and len(value) == 1 and "value" in value:
        inner = value["value"]
        if spec.type is not TraitType.OTHER or isinstance(inner, dict | list):
            return inner
    return value


def decode_set(spec: TraitSpec, payload: bytes | str, current: Any = None, where: str = "") -> Any:
    """Parse a ``/set`` payload and validate it against ``spec``: the model value to write.

    Accepted: plain text, JSON scalars and ``{"value": x}``; see :func:`decode_value` for the
    per-type rules. STRING traits take any text as it is (nothing stripped) unless it is a JSON
    string (then unquoted) or a ``{"value": ...}`` wrapper. ``current`` is the trait's known value
    (for ``toggle``); ``where`` the trait path used in messages. Raises :class:`WriteRejected`.
    """
    _check_writable(spec, where)
    text = _text(payload, where)
    stripped = text.strip()
    if spec.type is TraitType.STRING:
        if stripped[:1] in ('"', "{"):
            parsed = _loads(stripped)
            if isinstance(parsed, str):
                return parsed
            if isinstance(parsed, dict) and len(parsed) == 1 and "value" in parsed:
                return _validate(spec, parsed, current, where)
        return text
    if not stripped:
        raise WriteRejected(f"empty payload{_for(where)}")
    parsed = _loads(stripped)
    if spec.type is TraitType.ENUM:
        return _decode_enum_text(spec, stripped, parsed, where)
    if parsed is _MISSING:
        parsed = stripped  # bare text: ON, toggle, a number with a leading '+'...
    return _validate(spec, parsed, current, where)


def _decode_enum_text(spec: TraitSpec, text: str, parsed: Any, where: str) -> str:
    """Enum payloads: a JSON string or ``{"value": x}`` wrapper, else the bare text itself (so
    labels such as ``1``, ``true`` or ``[auto]`` work); a JSON string that names no option is
    retried as bare text (labels that contain quotes)."""
    if isinstance(parsed, dict) and len(parsed) == 1 and "value" in parsed:
        return _validate_enum(spec, parsed["value"], where)
    if isinstance(parsed, str):
        try:
            return _validate_enum(spec, parsed, where)
        except WriteRejected as exc:
            try:
                return _validate_enum(spec, text, where)
            except WriteRejected:
                raise exc from None
    return _validate_enum(spec, text, where)


def decode_value(spec: TraitSpec, value: Any, current: Any = None, where: str = "") -> Any:
    """Validate an already-parsed JSON value (e.g. from :func:`decode_device_set`).

    - BOOLEAN: ``true``/``false``, ``1``/``0``, ``"ON"``/``"OFF"``/``"true"``/``"1"``… (any
      case), an enum key label of the spec, or ``"toggle"`` (needs ``current`` as a bool).
    - NUMBER: a number or numeric string (no bool, NaN, infinity); whole numbers only for integer
      specs; within min/max; on the step grid counted from min (float noise within a millionth
      of a step is snapped to the grid, anything else is rejected naming the nearest values).
    - ENUM: a key label (exact, then case-insensitive) or a wire value (a string or an integer).
      Without options in the spec any string is accepted.
    - STRING: a string (numbers and booleans become their payload text).
    - OTHER: a JSON object or array.

    ``{"value": x}`` is unwrapped first. Raises :class:`WriteRejected`.
    """
    _check_writable(spec, where)
    return _validate(spec, value, current, where)


def _check_writable(spec: TraitSpec, where: str) -> None:
    if not spec.writable:
        raise WriteRejected(f"trait {where} is read-only" if where else "trait is read-only")


def _validate(spec: TraitSpec, value: Any, current: Any, where: str) -> Any:
    value = _unwrap(spec, value)
    kind = spec.type
    if kind is TraitType.BOOLEAN:
        return _validate_bool(spec, value, current, where)
    if kind is TraitType.NUMBER:
        return _validate_number(spec, value, where)
    if kind is TraitType.ENUM:
        return _validate_enum(spec, value, where)
    if kind is TraitType.STRING:
        if isinstance(value, str):
            return value
        if isinstance(value, bool | int | float) and (
            not isinstance(value, float) or math.isfinite(value)
        ):
            return plain_number(value)
        raise WriteRejected(f"value {_show(value)} is not a string{_for(where)}")
    if isinstance(value, dict | list):
        return value
    raise WriteRejected(f"value {_show(value)} is not a JSON object or array{_for(where)}")


def _validate_bool(spec: TraitSpec, value: Any, current: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
        if word == "toggle":
            if isinstance(current, bool):
                return not current
            raise WriteRejected(f"cannot toggle{_for(where)}: current value unknown")
        for option in spec.enums:
            if option.key.strip().lower() == word:
                wire = option.value.strip().lower()
                if wire in _TRUE_WORDS:
                    return True
                if wire in _FALSE_WORDS:
                    return False
    raise WriteRejected(
        f"value {_show(value)} is not a boolean{_for(where)}"
        " (use true/false, ON/OFF, 1/0 or toggle)"
    )


def _validate_number(spec: TraitSpec, value: Any, where: str) -> int | float:
    number: int | float
    if isinstance(value, bool):
        raise WriteRejected(f"value {_show(value)} is not a number{_for(where)}")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise WriteRejected(f"value {_show(value)} is not a finite number{_for(where)}")
        number = value
    elif isinstance(value, str):
        try:
            number = _number_from_text(value.strip())
        except ValueError as exc:
            raise WriteRejected(f"value {exc}{_for(where)}") from None
    else:
        raise WriteRejected(f"value {_show(value)} is not a number{_for(where)}")
    if spec.is_integer and isinstance(number, float):
        if not number.is_integer():
            raise WriteRejected(f"value {_show(number)} is not a whole number{_for(where)}")
        number = int(number)
    if spec.min is not None and number < spec.min:
        raise WriteRejected(
            f"value {_show(number)} is below the minimum {_show(spec.min)}{_for(where)}"
        )
    if spec.max is not None and number > spec.max:
        raise WriteRejected(
            f"value {_show(number)} is above the maximum {_show(spec.max)}{_for(where)}"
        )
    number = _on_step(spec, number, where)
    if spec.is_integer:
        return number
    try:
        return float(number)
    except OverflowError:
        raise WriteRejected(f"value {_show(number)} is out of range{_for(where)}") from None


STEP_TOLERANCE = 1e-6
"""How far from the step grid (in steps) a number may be and still count as on it (float noise
such as ``0.30000000000000004``)."""


def _decimals(number: float) -> int:
    exponent = Decimal(repr(float(number))).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _on_step(spec: TraitSpec, number: int | float, where: str) -> int | float:
    """``number`` on the spec's step grid (counted from ``min``, else 0): snapped to it when
    within :data:`STEP_TOLERANCE`, else rejected naming the two nearest valid values."""
    step = spec.step
    if not step or step <= 0 or not math.isfinite(step):
        return number
    origin = spec.min if spec.min is not None and math.isfinite(spec.min) else 0
    if isinstance(number, int) and float(step).is_integer() and float(origin).is_integer():
        offset = (number - int(origin)) % int(step)  # exact for big integers
        if offset == 0:
            return number
        below: int | float = number - offset
        above: int | float = below + int(step)
    else:
        try:
            units = (number - origin) / step
        except OverflowError:
            return number
        nearest = round(units)
        # a float's own error grows with its size: never reject what is on the grid but for it
        if abs(units - nearest) <= max(STEP_TOLERANCE, abs(units) * 1e-14):
            if isinstance(number, int):
                return number  # already exact: snapping through a float could only lose digits
            return round(origin + nearest * step, max(_decimals(step), _decimals(origin)))
        digits = max(_decimals(step), _decimals(origin))
        below = round(origin + math.floor(units) * step, digits)
        above = round(origin + (math.floor(units) + 1) * step, digits)
    valid = [v for v in (below, above)
             if (spec.min is None or v >= spec.min) and (spec.max is None or v <= spec.max)]
    hint = " or ".join(_show(v) for v in valid)
    raise WriteRejected(
        f"value {_show(number)} is not on the step {_show(step)}{_for(where)}"
        + (f" (nearest valid: {hint})" if hint else "")
    )


def _validate_enum(spec: TraitSpec, value: Any, where: str) -> str:
    if isinstance(value, str):
        text = value.strip()
    elif isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        text = str(int(value))
    else:
        raise WriteRejected(f"value {_show(value)} is not an enum value{_for(where)}")
    if not spec.enums:
        return text
    for option in spec.enums:
        if option.key == text:
            return option.value
    folded = text.casefold()
    for option in spec.enums:
        if option.key.casefold() == folded:
            return option.value
    candidates = [text]
    if _NUMBER_TEXT.fullmatch(text):  # "1.0" or "+1" for the wire value "1"
        try:
            number = float(text)
        except (ValueError, OverflowError):  # pragma: no cover - the pattern always parses
            number = math.nan
        if math.isfinite(number) and number.is_integer():
            candidates.append(str(int(number)))
    for option in spec.enums:
        if option.value in candidates:
            return option.value
    choices = ", ".join(f"{o.key} ({o.value})" for o in spec.enums[:20])
    if len(spec.enums) > 20:
        choices += ", …"
    raise WriteRejected(f"value {_show(value)} is not one of {choices}{_for(where)}")


def echoes_read_only(spec: TraitSpec, value_json: str, current: Any) -> bool:
    """Whether a device ``/set`` member names a read-only trait with the value it has now, as
    the device document shows it (or as its wire value): a document sent back edited carries
    such members, which are ignored rather than refused. JSON types count (``true`` is not
    ``1``), numbers compare by value (``21`` is ``21.0``, as JavaScript re-serialises it)."""
    if spec.writable or current is None:
        return False
    try:
        sent = json.loads(value_json)
    except ValueError:
        return False
    return _same_json(sent, to_json_value(spec, current)) or _same_json(sent, current)


def _same_json(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same_json, a, b))
    return type(a) is type(b) and bool(a == b)


def decode_device_set(payload: bytes | str) -> list[tuple[int, str, str, str]]:
    """Parse a device-level ``/set`` document ``{endpointId: {functionCode: {traitCode: value}}}``.

    Returns ``(endpoint_id, function_code, trait_code, value_json)`` in document order; each
    value is given back as compact JSON text, to be validated with :func:`decode_set` exactly like
    a trait ``/set`` payload (so ``"ON"``, ``{"value": 5}`` and ``"toggle"`` work the same way).
    Raises :class:`WriteRejected` naming the path of a malformed part.
    """
    text = _text(payload, "")
    document = _loads(text.strip()) if text.strip() else _MISSING
    if document is _MISSING:
        raise WriteRejected(
            "device payload is not JSON: expected {endpointId: {function: {trait: value}}}"
        )
    if not isinstance(document, dict):
        raise WriteRejected(
            "device payload must be a JSON object {endpointId: {function: {trait: value}}}"
        )
    entries: list[tuple[int, str, str, str]] = []
    for endpoint_key, functions in document.items():
        key = endpoint_key.strip()
        if not (key.isascii() and key.isdigit()) or len(key) > 18:
            raise WriteRejected(f"endpoint id {_show(endpoint_key)} is not an integer")
        endpoint_id = int(key)
        if not isinstance(functions, dict):
            raise WriteRejected(
                f"{key} must be an object of function codes, got {_show(functions)}"
            )
        for function_code, traits in functions.items():
            if not function_code:
                raise WriteRejected(f"{key} has an empty function code")
            if not isinstance(traits, dict):
                raise WriteRejected(
                    f"{key}.{function_code} must be an object of trait codes, got {_show(traits)}"
                )
            for trait_code, value in traits.items():
                if not trait_code:
                    raise WriteRejected(f"{key}.{function_code} has an empty trait code")
                try:
                    text = _dumps(value)
                except (ValueError, RecursionError):
                    raise WriteRejected(
                        f"{key}.{function_code}.{trait_code} is nested too deeply"
                    ) from None
                entries.append((endpoint_id, function_code, trait_code, text))
    if not entries:
        raise WriteRejected("device payload names no traits")
    return entries
