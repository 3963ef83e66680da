"""Tuya request signing (published vectors) and message-service crypto."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from bridge.backends.tuya.sign import (
    EMPTY_SHA256,
    aes_ecb_decrypt,
    aes_ecb_encrypt,
    aes_gcm_decrypt,
    aes_gcm_encrypt,
    aes_key,
    canonical_url,
    content_sha256,
    decode_push_frame,
    encode_push_frame,
    headers_block,
    legacy_sign,
    pulsar_password,
    sign,
    sign_request,
    string_to_sign,
)

# The inputs of Tuya's signature documentation (protocols.md §3.3).
CLIENT_ID = "1KAD46OrT9HafiKdsXeg"
SECRET = "4OHBOnWOqaEC1mWXOpVL3yV50s0qGSRC"
T = "1588925778000"
ACCESS_TOKEN = "3f4eda2bdec17232f67c0b188af3eec1"
NONCE = "5138cc3a9033d69856923fd07b491173"


def test_empty_body_hash() -> None:
    assert content_sha256(b"") == EMPTY_SHA256
    assert content_sha256(None) == EMPTY_SHA256
    assert content_sha256("{}") == hashlib.sha256(b"{}").hexdigest()


def test_new_algorithm_token_vector() -> None:
    to_sign = string_to_sign("GET", b"", canonical_url("/v1.0/token", {"grant_type": "1"}))
    assert to_sign == f"GET\n{EMPTY_SHA256}\n\n/v1.0/token?grant_type=1"
    assert sign(CLIENT_ID, SECRET, T, NONCE, to_sign) == (
        "3206F74CBFC2869794FD3013C44F18166BE22AB1FB5FF66F513212264F67F681")
    assert sign_request(client_id=CLIENT_ID, secret=SECRET, method="get", path="/v1.0/token",
                        query={"grant_type": "1"}, t=T, nonce=NONCE) == (
        "3206F74CBFC2869794FD3013C44F18166BE22AB1FB5FF66F513212264F67F681")


def test_legacy_algorithm_vectors() -> None:
    assert legacy_sign(CLIENT_ID, SECRET, T) == (
        "CEAAFB5CCDC2F723A9FD3E91D3D2238EE0DD9A6D7C3C365DEB50FC2AF277AA83")
    assert legacy_sign(CLIENT_ID, SECRET, T, ACCESS_TOKEN) == (
        "36C30E300F226B68ADD014DD1EF56A81EDB7B7A817840485769B9D6C96D0FAA1")


def test_business_sign_covers_token_body_query_and_signed_headers() -> None:
    body = b'{"commands":[{"code":"switch_1","value":true}]}'
    got = sign_request(client_id=CLIENT_ID, secret=SECRET, method="POST",
                       path="/v1.0/devices/abc/commands", query={"b": "2", "a": "1"}, body=body,
                       t=T, nonce=NONCE, access_token=ACCESS_TOKEN,
                       signature_headers={"area_id": "29a", "call_id": "8afd"})
    expected_string = ("POST\n" + hashlib.sha256(body).hexdigest() + "\n"
                       "area_id:29a\ncall_id:8afd\n\n/v1.0/devices/abc/commands?a=1&b=2")
    expected = hmac.new(SECRET.encode(), (CLIENT_ID + ACCESS_TOKEN + T + NONCE
                                          + expected_string).encode(), hashlib.sha256)
    assert got == expected.hexdigest().upper()
    # every input matters
    assert got != sign_request(client_id=CLIENT_ID, secret=SECRET, method="POST",
                               path="/v1.0/devices/abc/commands", query={"b": "2", "a": "1"},
                               body=body + b" ", t=T, nonce=NONCE, access_token=ACCESS_TOKEN,
                               signature_headers={"area_id": "29a", "call_id": "8afd"})


def test_canonical_url() -> None:
    assert canonical_url("/v1.0/x") == "/v1.0/x"
    assert canonical_url("/v1.0/x", {}) == "/v1.0/x"
    assert canonical_url("/p", {"z": 1, "a": "x,y", "m": None, "b": True}) == (
        "/p?a=x,y&b=true&z=1")
    assert canonical_url("/p", [("k", "2"), ("a", "1"), ("k", "1")]) == "/p?a=1&k=2&k=1"


def test_headers_block_is_case_insensitive_and_ordered() -> None:
    headers = {"Area_Id": "a", "call_id": "c"}
    assert headers_block(headers, ["call_id", "area_id"]) == "call_id:c\narea_id:a\n"
    assert headers_block(headers, []) == ""


def test_pulsar_password() -> None:
    inner = hashlib.md5(SECRET.encode()).hexdigest()
    expected = hashlib.md5((CLIENT_ID + inner).encode()).hexdigest()[8:24]
    assert pulsar_password(CLIENT_ID, SECRET) == expected
    assert len(expected) == 16


def test_aes_known_answer_fips197() -> None:
    key = bytes(range(16))
    block = bytes.fromhex("00112233445566778899aabbccddeeff")
    encrypted = aes_ecb_encrypt(key, block)
    assert encrypted[:16].hex() == "69c4e0d86a7b0430d8cdb78070b4c55a"
    assert len(encrypted) == 32  # PKCS7 adds a whole block to a full one
    assert aes_ecb_decrypt(key, encrypted) == block


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 100])
def test_aes_round_trip(size: int) -> None:
    key = aes_key(SECRET)
    assert key == SECRET[8:24].encode()
    plain = bytes(range(size))
    assert aes_ecb_decrypt(key, aes_ecb_encrypt(key, plain)) == plain


def test_aes_rejects_bad_input() -> None:
    key = aes_key(SECRET)
    with pytest.raises(ValueError, match="multiple"):
        aes_ecb_decrypt(key, b"short")
    with pytest.raises(ValueError, match=r"padding|Invalid"):
        aes_ecb_decrypt(aes_key("x" * 8 + "another-key-1234"), aes_ecb_encrypt(key, b"hello"))
    with pytest.raises(ValueError, match="too short"):
        aes_key("tiny")


def test_aes_gcm_known_answer_nist() -> None:
    """The GCM specification's test case 3 (AES-128, 96-bit IV), in the message layout."""
    key = bytes.fromhex("feffe9928665731c6d6a8f9467308308")
    nonce = bytes.fromhex("cafebabefacedbaddecaf888")
    plain = bytes.fromhex(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255")
    sealed = bytes.fromhex(
        "cafebabefacedbaddecaf888"
        "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
        "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985"
        "4d5c2af327cd64a62cf35abd2ba6fab4")
    assert aes_gcm_encrypt(key, nonce, plain) == sealed
    assert aes_gcm_decrypt(key, sealed) == plain


# Computed with pycryptodome (the library of Tuya's own Pulsar SDK), not with our code:
# key "1234567890abcdef" = secret[8:24], nonce 00 01 .. 0b.
GCM_SECRET = "abcdefgh1234567890abcdefxyz"
GCM_DATA = b'{"devId":"vdevo1","status":[{"code":"switch_1","value":true,"t":1700000000000}]}'
GCM_SEALED = bytes.fromhex(
    "000102030405060708090a0b"
    "33049feaaac9e5b0a48383fdcfe20ac1e3538e51b49d3db58d17df5a8606ec4c"
    "ef6e1839fcfd5aaad53400834a65d5e1fc5c74aa9003a3d4c670c3a91c695f5e"
    "75a250edf2f1c85b11767c8c635ee0fb57b0a27ef26449690c58983f06d1c709")


def test_aes_gcm_vector_from_tuyas_library() -> None:
    assert aes_gcm_decrypt(aes_key(GCM_SECRET), GCM_SEALED) == GCM_DATA
    frame = json.dumps({"messageId": "m1", "properties": {"em": "aes_gcm"},
                        "payload": base64.b64encode(json.dumps({
                            "protocol": 4, "pv": "2.0", "t": 1, "sign": "",
                            "data": base64.b64encode(GCM_SEALED).decode()}).encode()).decode()})
    _, _, data = decode_push_frame(GCM_SECRET, frame)
    assert data["status"][0]["value"] is True
    # the same data announced as ECB (no "em"), or tampered with: refused, never garbage
    with pytest.raises(ValueError, match="does not decrypt"):
        decode_push_frame(GCM_SECRET, frame.replace(', "properties": {"em": "aes_gcm"}', ""))
    tampered = GCM_SEALED[:-1] + bytes([GCM_SEALED[-1] ^ 1])
    with pytest.raises(ValueError, match="tag mismatch"):
        aes_gcm_decrypt(aes_key(GCM_SECRET), tampered)
    with pytest.raises(ValueError, match="shorter"):
        aes_gcm_decrypt(aes_key(GCM_SECRET), b"x" * 27)
    with pytest.raises(ValueError, match="unknown message encryption"):
        decode_push_frame(GCM_SECRET, frame.replace("aes_gcm", "aes_cbc"))


def test_gcm_push_frame_round_trip() -> None:
    data = {"devId": "dev1", "status": [{"code": "switch_1", "value": False}]}
    frame = encode_push_frame(SECRET, "m2", data, protocol=4, t=1, gcm_nonce=b"n" * 12)
    assert json.loads(frame)["properties"] == {"em": "aes_gcm"}
    assert decode_push_frame(SECRET, frame)[2] == data


def test_push_frame_round_trip_matches_documented_layout() -> None:
    data = {"dataId": "AAX", "devId": "dev1", "productKey": "pk",
            "status": [{"code": "switch_1", "value": False, "t": 1628229842692, "1": "false"}]}
    frame = encode_push_frame(SECRET, "CAAQAw==", data, protocol=4, t=1628229842692,
                              sign_value="abc", extra={"redeliveryCount": 0})
    outer = json.loads(frame)
    assert outer["messageId"] == "CAAQAw=="
    assert outer["redeliveryCount"] == 0
    payload = json.loads(base64.b64decode(outer["payload"]))
    assert payload["protocol"] == 4
    assert payload["pv"] == "2.0"
    assert payload["sign"] == "abc"
    clear = aes_ecb_decrypt(SECRET[8:24].encode(), base64.b64decode(payload["data"]))
    assert json.loads(clear) == data
    message_id, decoded_payload, decoded = decode_push_frame(SECRET, frame)
    assert (message_id, decoded_payload["protocol"], decoded) == ("CAAQAw==", 4, data)


@pytest.mark.parametrize(("frame", "reason", "has_id"), [
    ("not json", "not JSON", False),
    ("[1]", "not a JSON object", False),
    ('{"payload": "e30="}', "no messageId", False),
    ('{"messageId": "m1"}', "payload is missing", True),
    ('{"messageId": "m1", "payload": "%%%"}', "not base64", True),
    ('{"messageId": "m1", "payload": "' + base64.b64encode(b'{"data": 5}').decode() + '"}',
     "no data", True),
    ('{"messageId": "m1", "payload": "' + base64.b64encode(b'{"data": "AAAA"}').decode() + '"}',
     "decrypt", True),
])
def test_bad_push_frames(frame: str, reason: str, has_id: bool) -> None:
    with pytest.raises(ValueError, match=reason) as caught:
        decode_push_frame(SECRET, frame)
    assert (len(caught.value.args) > 1 and caught.value.args[1] == "m1") is has_id
    assert SECRET not in str(caught.value)


def test_push_frame_with_another_secret_does_not_decode() -> None:
    frame = encode_push_frame(SECRET, "m2", {"a": 1}, protocol=4, t=1)
    with pytest.raises(ValueError, match=r"decrypt|JSON") as caught:
        decode_push_frame("0" * 32, frame)
    assert caught.value.args[1] == "m2"
