"""Callback crypto: the published WeCom example vectors, round trips, and every rejection."""

from __future__ import annotations

import base64
import itertools

import pytest

from yutang.carriers.wecom.crypto import (
    BadPadding,
    BadSignature,
    CallbackCrypto,
    CallbackRejected,
    InvalidAESKey,
    MalformedCallback,
    WrongReceiveId,
    sign,
)

# The example published with WeCom's "加解密库" (WXBizMsgCrypt) samples.
TOKEN = "QDG6eK"
CORP_ID = "wx5823bf96d3bd56c7"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
VERIFY = {
    "msg_signature": "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
    "timestamp": "1409659589",
    "nonce": "263014780",
    "echostr": "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==",
}
POST_QUERY = {
    "msg_signature": "477715d11cdb4164915debcba66cb864d751f3e6",
    "timestamp": "1409659813",
    "nonce": "1372623149",
}
POST_ENCRYPT = "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q=="
POST_BODY = (
    f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName>"
    f"<Encrypt><![CDATA[{POST_ENCRYPT}]]></Encrypt><AgentID><![CDATA[218]]></AgentID></xml>"
)


def official() -> CallbackCrypto:
    return CallbackCrypto(token=TOKEN, encoding_aes_key=AES_KEY, receive_id=CORP_ID)


def counting_bytes(n: int) -> bytes:
    return bytes(range(n))


def test_published_url_verification_vector_decrypts_to_the_echo() -> None:
    assert official().verify_url(**VERIFY) == "1616140317555161061"


def test_published_callback_vector_verifies_and_decrypts() -> None:
    text = official().decrypt_body(**POST_QUERY, body=POST_BODY)
    assert "<Content><![CDATA[hello]]></Content>" in text
    assert "<MsgId>4561255354251345929</MsgId>" in text


def test_signature_is_sha1_of_the_sorted_four_values() -> None:
    assert sign(token=TOKEN, timestamp=VERIFY["timestamp"], nonce=VERIFY["nonce"],
                encrypt=VERIFY["echostr"]) == VERIFY["msg_signature"]  # fmt: skip


def test_round_trip_of_unicode_message_and_passive_reply() -> None:
    crypto = official()
    message = "<xml><Content><![CDATA[欢迎光临 鱼塘 🐟]]></Content></xml>"
    envelope = crypto.seal(message, timestamp="1700000000", nonce="n1")
    assert crypto.decrypt_body(**envelope.query, body=envelope.reply_body()) == message
    assert (
        crypto.decrypt_body(**envelope.query, body=envelope.callback_body(to_user_name=CORP_ID))
        == message
    )


def test_ciphertext_is_32_byte_padded_and_carries_the_corp_id() -> None:
    crypto = CallbackCrypto(token=TOKEN, encoding_aes_key=AES_KEY, receive_id=CORP_ID,
                            random_bytes=counting_bytes)  # fmt: skip
    for length in range(0, 70):
        encrypted = base64.b64decode(crypto.encrypt("x" * length))
        assert len(encrypted) % 32 == 0
        assert crypto.decrypt(base64.b64encode(encrypted).decode()) == "x" * length


def test_encryption_is_deterministic_only_for_fixed_random_bytes() -> None:
    fixed = CallbackCrypto(token=TOKEN, encoding_aes_key=AES_KEY, receive_id=CORP_ID,
                           random_bytes=counting_bytes)  # fmt: skip
    assert fixed.encrypt("hello") == fixed.encrypt("hello")
    assert official().encrypt("hello") != official().encrypt("hello")


def test_bad_signature_is_rejected_before_decryption() -> None:
    query = {**POST_QUERY, "msg_signature": "0" * 40}
    with pytest.raises(BadSignature) as caught:
        official().decrypt_body(**query, body=POST_BODY)
    assert caught.value.field == "msg_signature"
    assert isinstance(caught.value, CallbackRejected)


@pytest.mark.parametrize("name", ["timestamp", "nonce"])
def test_changed_timestamp_or_nonce_breaks_the_signature(name: str) -> None:
    query = {**POST_QUERY, name: POST_QUERY[name] + "1"}
    with pytest.raises(BadSignature):
        official().decrypt_body(**query, body=POST_BODY)


def test_wrong_token_is_rejected() -> None:
    other = CallbackCrypto(token="another", encoding_aes_key=AES_KEY, receive_id=CORP_ID)
    with pytest.raises(BadSignature):
        other.verify_url(**VERIFY)


def test_message_for_another_corp_is_rejected() -> None:
    other = CallbackCrypto(token=TOKEN, encoding_aes_key=AES_KEY, receive_id="ww-another-corp")
    with pytest.raises(WrongReceiveId) as caught:
        other.decrypt_body(**POST_QUERY, body=POST_BODY)
    assert caught.value.code == "wecom_wrong_receive_id"


def test_tampered_ciphertext_with_a_valid_signature_fails_padding() -> None:
    # An attacker who knows the token but not the key flips the last padding byte (CBC: the
    # byte in the previous block) and re-signs: decryption must still refuse it.
    crypto = CallbackCrypto(token=TOKEN, encoding_aes_key=AES_KEY, receive_id=CORP_ID,
                            random_bytes=counting_bytes)  # fmt: skip
    raw = bytearray(base64.b64decode(crypto.encrypt("<xml><a>1</a></xml>")))
    raw[-17] ^= 0xFF
    tampered = base64.b64encode(bytes(raw)).decode()
    signature = crypto.signature(timestamp="1", nonce="2", encrypt=tampered)
    body = f"<xml><Encrypt><![CDATA[{tampered}]]></Encrypt></xml>"
    with pytest.raises(BadPadding):
        crypto.decrypt_body(msg_signature=signature, timestamp="1", nonce="2", body=body)


def test_truncated_ciphertext_is_rejected() -> None:
    truncated = base64.b64encode(base64.b64decode(POST_ENCRYPT)[:-5]).decode()
    with pytest.raises(BadPadding):
        official().decrypt(truncated)


def test_wrong_key_never_yields_plaintext() -> None:
    other_key = base64.b64encode(bytes(range(32))).decode()[:43]
    wrong = CallbackCrypto(token=TOKEN, encoding_aes_key=other_key, receive_id=CORP_ID)
    with pytest.raises((BadPadding, WrongReceiveId)):
        wrong.decrypt(POST_ENCRYPT)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("not xml", "body"),
        ("<xml><ToUserName>x</ToUserName></xml>", "Encrypt"),
        ("<xml><Encrypt>%%%</Encrypt></xml>", "Encrypt"),
    ],
)
def test_malformed_bodies_name_the_fault(body: str, field: str) -> None:
    crypto = official()
    encrypt = body.split("<Encrypt>")[1].split("</Encrypt>")[0] if "<Encrypt>" in body else ""
    signature = crypto.signature(timestamp="1", nonce="2", encrypt=encrypt)
    with pytest.raises(MalformedCallback) as caught:
        crypto.decrypt_body(msg_signature=signature, timestamp="1", nonce="2", body=body)
    assert caught.value.field == field


def test_entity_expansion_is_refused() -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><xml><Encrypt>&b;</Encrypt></xml>'
    )
    with pytest.raises(MalformedCallback):
        official().decrypt_body(**POST_QUERY, body=bomb)


@pytest.mark.parametrize("missing", ["msg_signature", "timestamp", "nonce", "echostr"])
def test_missing_parameters_are_named(missing: str) -> None:
    with pytest.raises(MalformedCallback) as caught:
        official().verify_url(**{**VERIFY, missing: ""})
    assert caught.value.field == missing


@pytest.mark.parametrize("key", ["short", AES_KEY + "A", "!" * 43])
def test_invalid_aes_keys_are_refused_at_configuration(key: str) -> None:
    with pytest.raises(InvalidAESKey):
        CallbackCrypto(token=TOKEN, encoding_aes_key=key, receive_id=CORP_ID)


def test_signatures_of_distinct_nonces_differ() -> None:
    signatures = {
        sign(token=TOKEN, timestamp="1", nonce=str(n), encrypt="e")
        for n in itertools.islice(itertools.count(), 50)
    }
    assert len(signatures) == 50
