"""Tuya cloud request signing and message-service (Pulsar) crypto: pure functions, no IO.

Request signing, the *new* algorithm (DOC https://developer.tuya.com/en/docs/iot/new-singnature,
protocols.md §3.3; mandatory for projects created after 2021-06-30)::

    stringToSign = METHOD + "\\n" + Content-SHA256 + "\\n" + Headers + "\\n" + Url
    token APIs:    str = client_id + t + nonce + stringToSign
    business APIs: str = client_id + access_token + t + nonce + stringToSign
    sign = upper(hex(HMAC-SHA256(key=secret, msg=str)))

``Content-SHA256`` is the hex SHA-256 of the raw body bytes (the empty body hashes to
``e3b0c442…b855``), ``Headers`` is ``"name:value\\n"`` for each header named in
``Signature-Headers`` (``:``-separated, in that order) and ``Url`` is the path followed by
``?k=v&…`` with the query parameters sorted by key (decoded values, as tuya-connector-python
builds it). The old algorithm (:func:`legacy_sign`) is kept for reference and tests only.

Message service (protocols.md §3.6, 3P tuya-connector-python ``openpulsar.py``): the WebSocket
consumer authenticates with ``username = access_id`` and :func:`pulsar_password`; each frame's
``payload`` is base64 JSON whose ``data`` is base64(AES-128-ECB(key = secret[8:24], PKCS7)), or,
when the frame's ``properties`` carry ``"em": "aes_gcm"`` (newer projects; Tuya's Pulsar SDKs
``tuya-pulsar-sdk-python`` ``message_util.py`` and ``tuya-pulsar-sdk-java``
``AESGCMDecryptor``), base64(12-byte nonce + AES-128-GCM ciphertext + 16-byte tag), same key, no
associated data. AES comes from ``cryptography``; nothing here is a hand-written cipher.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bridge import jsonlimits

__all__ = [
    "API_HOSTS",
    "EMPTY_SHA256",
    "PUSH_HOSTS",
    "SIGN_METHOD",
    "aes_ecb_decrypt",
    "aes_ecb_encrypt",
    "aes_gcm_decrypt",
    "aes_gcm_encrypt",
    "aes_key",
    "canonical_url",
    "content_sha256",
    "decode_push_frame",
    "encode_push_frame",
    "headers_block",
    "legacy_sign",
    "pulsar_password",
    "sign",
    "sign_request",
    "string_to_sign",
]

SIGN_METHOD = "HMAC-SHA256"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

API_HOSTS: dict[str, str] = {
    "cn": "https://openapi.tuyacn.com",
    "us": "https://openapi.tuyaus.com",
    "us-e": "https://openapi-ueaz.tuyaus.com",
    "eu": "https://openapi.tuyaeu.com",
    "eu-w": "https://openapi-weaz.tuyaeu.com",
    "in": "https://openapi.tuyain.com",
    "sg": "https://openapi-sg.iotbing.com",
}
"""OpenAPI hosts per data-centre region (3P: tuya-connector-python ``tuya_enums.py``, tinytuya;
Singapore from tinytuya's ``Cloud.setregion``)."""

PUSH_HOSTS: dict[str, str] = {
    "cn": "wss://mqe.tuyacn.com:8285/",
    "us": "wss://mqe.tuyaus.com:8285/",
    "us-e": "wss://mqe.tuyaus.com:8285/",
    "eu": "wss://mqe.tuyaeu.com:8285/",
    "eu-w": "wss://mqe.tuyaeu.com:8285/",
    "in": "wss://mqe.tuyain.com:8285/",
    "sg": "wss://mqe-sg.iotbing.com:8285/",
}
"""Message-service endpoints (3P: tuya-connector-python; the ``-e``/``-w`` regions share the
main region's endpoint there, INFERRED; Singapore's from several third-party clients, not from a
Tuya SDK)."""


# ---- request signing ----------------------------------------------------------------------------


def content_sha256(body: bytes | str | None) -> str:
    """Hex SHA-256 of the raw body (``None`` and ``b""`` give :data:`EMPTY_SHA256`)."""
    if body is None:
        body = b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    return hashlib.sha256(body).hexdigest()


def canonical_url(path: str, query: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None
                  ) -> str:
    """``path`` plus ``?k=v&…`` sorted by key (stable for repeated keys); no query, no ``?``.

    Values are used as they are (not URL-encoded); ``None`` values are left out, booleans are
    ``true``/``false``.
    """
    items = list(query.items()) if isinstance(query, Mapping) else list(query or ())
    pairs = [(str(k), _query_text(v)) for k, v in items if v is not None]
    if not pairs:
        return path
    pairs.sort(key=lambda kv: kv[0])
    return path + "?" + "&".join(f"{k}={v}" for k, v in pairs)


def _query_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def headers_block(headers: Mapping[str, str], names: Sequence[str]) -> str:
    """``"name:value\\n"`` for every header in ``names`` (looked up case-insensitively)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    return "".join(f"{name}:{lowered.get(name.lower(), '')}\n" for name in names if name)


def string_to_sign(method: str, body: bytes | str | None, url: str,
                   signed_headers: str = "") -> str:
    """``METHOD\\nContent-SHA256\\nHeaders\\nUrl`` (headers from :func:`headers_block`)."""
    return f"{method.upper()}\n{content_sha256(body)}\n{signed_headers}\n{url}"


def sign(client_id: str, secret: str, t: str, nonce: str, to_sign: str,
         access_token: str = "") -> str:
    """The ``sign`` header: upper-case hex HMAC-SHA256 keyed with the secret.

    Token APIs pass no ``access_token``; business APIs pass the current one.
    """
    message = client_id + access_token + t + nonce + to_sign
    return hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256
                    ).hexdigest().upper()


def sign_request(*, client_id: str, secret: str, method: str, path: str,
                 query: Mapping[str, Any] | None = None, body: bytes | None = None,
                 t: str, nonce: str = "", access_token: str = "",
                 signature_headers: Mapping[str, str] | None = None) -> str:
    """Everything in one call: the ``sign`` for this request."""
    names = list(signature_headers or {})
    block = headers_block(signature_headers or {}, names)
    to_sign = string_to_sign(method, body, canonical_url(path, query), block)
    return sign(client_id, secret, t, nonce, to_sign, access_token)


def legacy_sign(client_id: str, secret: str, t: str, access_token: str = "") -> str:
    """The archived algorithm: HMAC-SHA256(client_id + [access_token] + t), upper hex."""
    message = client_id + access_token + t
    return hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256
                    ).hexdigest().upper()


# ---- message service (Pulsar) -------------------------------------------------------------------


def pulsar_password(access_id: str, secret: str) -> str:
    """The consumer's ``password`` header: ``md5hex(access_id + md5hex(secret))[8:24]``."""
    inner = hashlib.md5(secret.encode("utf-8")).hexdigest()
    return hashlib.md5((access_id + inner).encode("utf-8")).hexdigest()[8:24]


def aes_key(secret: str) -> bytes:
    """The AES-128 key of pushed ``data``: characters 8..23 of the secret, as UTF-8 bytes."""
    key = secret[8:24].encode("utf-8")
    if len(key) != 16:
        raise ValueError("the secret is too short to derive a message-service key")
    return key


def aes_ecb_encrypt(key: bytes, plaintext: bytes) -> bytes:
    """AES-ECB with PKCS7 padding (the message service's cipher; ECB is Tuya's choice)."""
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


def aes_ecb_decrypt(key: bytes, ciphertext: bytes) -> bytes:
    """Inverse of :func:`aes_ecb_encrypt`; ValueError for a wrong length or bad padding."""
    if not ciphertext or len(ciphertext) % 16:
        raise ValueError("ciphertext length is not a multiple of the AES block size")
    decryptor = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


GCM_NONCE = 12
GCM_TAG = 16


def aes_gcm_encrypt(key: bytes, nonce: bytes, plaintext: bytes) -> bytes:
    """``nonce + ciphertext + tag``: the layout of an ``"em": "aes_gcm"`` message's data."""
    return nonce + AESGCM(key).encrypt(nonce, plaintext, None)


def aes_gcm_decrypt(key: bytes, blob: bytes) -> bytes:
    """Inverse of :func:`aes_gcm_encrypt`; ValueError when too short or not authentic."""
    if len(blob) < GCM_NONCE + GCM_TAG:
        raise ValueError("ciphertext shorter than a GCM nonce and tag")
    try:
        return AESGCM(key).decrypt(blob[:GCM_NONCE], blob[GCM_NONCE:], None)
    except InvalidTag:
        raise ValueError("GCM tag mismatch") from None


def encode_push_frame(secret: str, message_id: str, data: Mapping[str, Any], *,
                      protocol: int, t: int, sign_value: str = "",
                      extra: Mapping[str, Any] | None = None,
                      gcm_nonce: bytes | None = None) -> str:
    """A consumer frame ``{"messageId", "payload": base64(JSON)}`` carrying ``data`` encrypted:
    AES-ECB, or AES-GCM with this nonce and ``"em": "aes_gcm"`` in the frame's ``properties``.

    For tests; ``extra`` adds frame fields (``publishTime``, ...).
    """
    clear = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    key = aes_key(secret)
    sealed = (aes_ecb_encrypt(key, clear) if gcm_nonce is None
              else aes_gcm_encrypt(key, gcm_nonce, clear))
    encrypted = base64.b64encode(sealed).decode("ascii")
    payload = {"protocol": protocol, "pv": "2.0", "t": t, "sign": sign_value, "data": encrypted}
    frame: dict[str, Any] = {"messageId": message_id}
    if gcm_nonce is not None:
        frame["properties"] = {"em": "aes_gcm"}
    frame["payload"] = base64.b64encode(
        json.dumps(payload, separators=(",", ":")).encode("utf-8")).decode("ascii")
    if extra:
        frame.update(extra)
    return json.dumps(frame, separators=(",", ":"))


def decode_push_frame(secret: str, raw: str | bytes
                      ) -> tuple[str, dict[str, Any], Any]:
    """``(messageId, payload, decrypted data)`` of one consumer frame.

    Raises ValueError (with a reason, never the secret) for anything malformed; the message id
    is attached as ``exc.args[1]`` when it could be read, so the caller can still ack it.
    """
    try:
        frame = jsonlimits.loads(raw, jsonlimits.HUB_MAX_BYTES)
    except ValueError:
        raise ValueError("frame is not JSON") from None
    if not isinstance(frame, dict):
        raise ValueError("frame is not a JSON object")
    message_id = frame.get("messageId")
    if not isinstance(message_id, str) or not message_id:
        raise ValueError("frame has no messageId")
    try:
        payload = _b64_json(frame.get("payload"), "payload")
        if not isinstance(payload, dict):
            raise ValueError("payload is not a JSON object")
        encrypted = payload.get("data")
        if not isinstance(encrypted, str):
            raise ValueError("payload has no data")
        try:
            ciphertext = base64.b64decode(encrypted, validate=True)
        except ValueError:
            raise ValueError("payload data is not base64") from None
        properties = frame.get("properties")
        mode = properties.get("em") if isinstance(properties, dict) else None
        if mode not in (None, "", "aes_ecb", "aes_gcm"):
            raise ValueError(f"unknown message encryption {str(mode)[:20]!r}")
        decrypt = aes_gcm_decrypt if mode == "aes_gcm" else aes_ecb_decrypt
        try:
            clear = decrypt(aes_key(secret), ciphertext)
        except ValueError:
            raise ValueError("payload data does not decrypt with this secret") from None
        try:
            data = jsonlimits.loads(clear.decode("utf-8"), jsonlimits.HUB_MAX_BYTES)
        except (UnicodeDecodeError, ValueError):
            raise ValueError("decrypted data is not JSON") from None
    except ValueError as exc:
        raise ValueError(str(exc), message_id) from None
    return message_id, payload, data


def _b64_json(value: Any, what: str) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"{what} is missing")
    try:
        text = base64.b64decode(value, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"{what} is not base64 UTF-8") from None
    try:
        return jsonlimits.loads(text, jsonlimits.HUB_MAX_BYTES)
    except ValueError:
        raise ValueError(f"{what} is not JSON") from None
