"""The Tuya simulator's own request signing and message-service crypto.

A deliberate twin of :mod:`bridge.backends.tuya.sign`, written again from the vendor documents
so that the simulator shares no code with the backend it tests (a bug on one side cannot cancel
out on the other); the published test vectors pin both.

* Request sign (DOC new-singnature, protocols.md §3.3): ``METHOD\\nsha256hex(body)\\n<headers>\\n
  <path>[?k=v&… sorted by key]``; ``<headers>`` is ``name:value\\n`` for each name listed in the
  ``Signature-Headers`` header; the HMAC-SHA256 (key: secret) of ``client_id [+ access_token] + t
  + nonce + stringToSign``, upper-case hex.
* Message service (3P tuya-connector-python ``openpulsar.py``; Tuya's Pulsar SDKs
  ``tuya-pulsar-sdk-python`` ``message_util.py`` and ``tuya-pulsar-sdk-java``
  ``AESGCMDecryptor``): consumer ``password`` = ``md5hex(access_id + md5hex(secret))[8:24]``;
  ``payload.data`` is base64 of AES-128 with key ``secret[8:24]``: ECB with PKCS7 padding, or,
  when the message's properties say ``"em": "aes_gcm"``, GCM = 12-byte nonce + ciphertext +
  16-byte tag (no associated data).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["ENCRYPTIONS", "frame", "message_key", "password", "request_sign", "to_sign"]

ENCRYPTIONS = ("aes_ecb", "aes_gcm")
"""The message encryptions the simulator can use (``em`` property; ECB sends none)."""


def to_sign(method: str, body: bytes, path: str, query: Sequence[tuple[str, str]],
            headers: Mapping[str, str], names: Sequence[str]) -> str:
    """The string to sign of one received request."""
    url = path
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in sorted(query, key=lambda kv: kv[0]))
    lowered = {k.lower(): v for k, v in headers.items()}
    block = "".join(f"{n}:{lowered.get(n.lower(), '')}\n" for n in names if n)
    return f"{method.upper()}\n{hashlib.sha256(body).hexdigest()}\n{block}\n{url}"


def request_sign(client_id: str, secret: str, t: str, nonce: str, string: str,
                 access_token: str = "") -> str:
    """The ``sign`` header the cloud expects."""
    message = (client_id + access_token + t + nonce + string).encode("utf-8")
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest().upper()


def password(access_id: str, secret: str) -> str:
    """The message-service consumer's ``password`` header."""
    inner = hashlib.md5(secret.encode("utf-8")).hexdigest()
    return hashlib.md5((access_id + inner).encode("utf-8")).hexdigest()[8:24]


def message_key(secret: str) -> bytes:
    """The AES-128 key of pushed data; ValueError for a secret too short to give one."""
    key = secret[8:24].encode("utf-8")
    if len(key) != 16:
        raise ValueError("the secret is too short to derive a message-service key")
    return key


def _encrypt(key: bytes, clear: bytes, encryption: str) -> bytes:
    if encryption == "aes_gcm":
        nonce = os.urandom(12)
        return nonce + AESGCM(key).encrypt(nonce, clear, None)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(clear) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


def frame(secret: str, message_id: str, data: Mapping[str, Any], *, protocol: int, t: int,
          sign: str, encryption: str, extra: Mapping[str, Any]) -> str:
    """One consumer frame (Pulsar WebSocket fields ``messageId``, ``payload``, ``properties``…)
    carrying ``data`` encrypted with ``encryption`` (one of :data:`ENCRYPTIONS`)."""
    if encryption not in ENCRYPTIONS:
        raise ValueError(f"unknown message encryption {encryption!r}")
    clear = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    secret_data = base64.b64encode(_encrypt(message_key(secret), clear, encryption)).decode()
    payload = {"protocol": protocol, "pv": "2.0", "t": t, "sign": sign, "data": secret_data}
    properties = {"em": encryption} if encryption == "aes_gcm" else {}
    body: dict[str, Any] = {
        "messageId": message_id,
        "payload": base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode(),
        "properties": properties,
    }
    body.update(extra)
    return json.dumps(body, separators=(",", ":"))
