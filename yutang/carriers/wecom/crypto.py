"""WeCom (企业微信) callback crypto: signature, AES-256-CBC and the receive-id check.

The protocol (WeCom "加解密方案说明"):

* ``msg_signature = sha1("".join(sorted([token, timestamp, nonce, encrypt])))``.
* The 43-character EncodingAESKey plus ``"="`` is base64 for a 32-byte AES-256 key; the IV is
  the key's first 16 bytes.
* The plaintext is ``random(16) + len(msg) as 4-byte network order + msg + receive_id``,
  padded with PKCS#7 to a multiple of 32 bytes, encrypted with AES-256-CBC and base64-encoded.
* ``receive_id`` is the corp id for a self-built app (自建应用) and must match on decryption.

Every failure raises a subclass of :class:`CallbackRejected`, so a callback endpoint can answer
with one status code and store nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from xml.etree.ElementTree import Element

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from defusedxml import ElementTree as SafeET

from yutang.core.errors import YutangError

BLOCK_BITS = 256  # WeCom pads to 32 bytes, not to AES's 16-byte block.


class CallbackRejected(YutangError):
    """A callback that must not be trusted. Nothing about it should be stored."""

    status_code = 403
    code = "wecom_callback_rejected"


class BadSignature(CallbackRejected):
    code = "wecom_bad_signature"


class WrongReceiveId(CallbackRejected):
    """The decrypted message was addressed to another corp (or app)."""

    code = "wecom_wrong_receive_id"


class BadPadding(CallbackRejected):
    """The ciphertext did not decrypt to a well-formed, padded message (tampered or wrong key)."""

    code = "wecom_bad_padding"


class MalformedCallback(CallbackRejected):
    """The body or a parameter is not what the protocol prescribes."""

    status_code = 400
    code = "wecom_malformed_callback"


class InvalidAESKey(ValueError):
    """Raised at configuration time, never for a request."""


def decode_aes_key(encoding_aes_key: str) -> bytes:
    if len(encoding_aes_key) != 43:
        raise InvalidAESKey("EncodingAESKey must be exactly 43 characters")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except binascii.Error as exc:
        raise InvalidAESKey("EncodingAESKey is not valid base64") from exc
    if len(key) != 32:
        raise InvalidAESKey("EncodingAESKey must decode to 32 bytes")
    return key


def sign(*, token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """The ``msg_signature`` of one message."""
    joined = "".join(sorted([token, timestamp, nonce, encrypt]))
    return hashlib.sha1(joined.encode(), usedforsecurity=False).hexdigest()


def parse_xml(text: str | bytes, *, what: str = "body") -> Element:
    """Parse untrusted XML with entity expansion and DTDs refused."""
    try:
        root = SafeET.fromstring(text)
    except Exception as exc:  # ParseError, DefusedXmlException, ValueError
        raise MalformedCallback(f"the {what} is not well-formed XML", field=what) from exc
    return root


@dataclass(frozen=True)
class SignedEnvelope:
    """An encrypted message with everything needed to deliver or verify it."""

    encrypt: str
    msg_signature: str
    timestamp: str
    nonce: str

    @property
    def query(self) -> dict[str, str]:
        """The query string WeCom puts on a callback POST."""
        return {
            "msg_signature": self.msg_signature,
            "timestamp": self.timestamp,
            "nonce": self.nonce,
        }

    def callback_body(self, *, to_user_name: str, agent_id: str = "") -> str:
        """The XML body WeCom POSTs to the callback URL."""
        agent = f"<AgentID><![CDATA[{agent_id}]]></AgentID>" if agent_id else ""
        return (
            f"<xml><ToUserName><![CDATA[{to_user_name}]]></ToUserName>"
            f"<Encrypt><![CDATA[{self.encrypt}]]></Encrypt>{agent}</xml>"
        )

    def reply_body(self) -> str:
        """The XML body of a passive (被动) encrypted reply."""
        return (
            f"<xml><Encrypt><![CDATA[{self.encrypt}]]></Encrypt>"
            f"<MsgSignature><![CDATA[{self.msg_signature}]]></MsgSignature>"
            f"<TimeStamp>{self.timestamp}</TimeStamp>"
            f"<Nonce><![CDATA[{self.nonce}]]></Nonce></xml>"
        )


class CallbackCrypto:
    """Verify, decrypt and encrypt WeCom callback messages for one (token, key, receive id).

    ``receive_id`` is the corp id (企业ID) for a self-built app. ``random_bytes`` is injectable
    so a test can produce a byte-exact ciphertext; it defaults to ``os.urandom``.
    """

    def __init__(
        self,
        *,
        token: str,
        encoding_aes_key: str,
        receive_id: str,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ):
        if not token:
            raise ValueError("token must not be empty")
        if not receive_id:
            raise ValueError("receive_id (corp id) must not be empty")
        self.token = token
        self.receive_id = receive_id
        self._key = decode_aes_key(encoding_aes_key)
        self._random_bytes = random_bytes

    # -- signatures ---------------------------------------------------------------------------

    def signature(self, *, timestamp: str, nonce: str, encrypt: str) -> str:
        return sign(token=self.token, timestamp=timestamp, nonce=nonce, encrypt=encrypt)

    def check_signature(
        self, *, msg_signature: str, timestamp: str, nonce: str, encrypt: str
    ) -> None:
        required = {"msg_signature": msg_signature, "timestamp": timestamp, "nonce": nonce}
        for name, value in required.items():
            if not value:
                raise MalformedCallback(f"{name} is missing", field=name)
        expected = self.signature(timestamp=timestamp, nonce=nonce, encrypt=encrypt)
        if not hmac.compare_digest(expected, msg_signature.lower()):
            raise BadSignature("msg_signature does not match", field="msg_signature")

    # -- AES ------------------------------------------------------------------------------------

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16]))

    def decrypt(self, encrypt: str) -> str:
        """Decrypt one ``Encrypt`` value and check its receive id; returns the message text."""
        try:
            raw = base64.b64decode(encrypt, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedCallback("Encrypt is not valid base64", field="Encrypt") from exc
        if not raw or len(raw) % 16:
            raise BadPadding("Encrypt is not a whole number of AES blocks", field="Encrypt")
        decryptor = self._cipher().decryptor()
        padded = decryptor.update(raw) + decryptor.finalize()
        unpadder = padding.PKCS7(BLOCK_BITS).unpadder()
        try:
            plain = unpadder.update(padded) + unpadder.finalize()
        except ValueError as exc:
            raise BadPadding("Encrypt does not decrypt to padded data", field="Encrypt") from exc
        if len(plain) < 20:
            raise BadPadding("decrypted message is too short", field="Encrypt")
        (length,) = struct.unpack(">I", plain[16:20])
        if 20 + length > len(plain):
            raise BadPadding("decrypted message length is out of range", field="Encrypt")
        message, receive_id = plain[20 : 20 + length], plain[20 + length :]
        if not hmac.compare_digest(receive_id, self.receive_id.encode()):
            raise WrongReceiveId("the message is addressed to another corp", field="ToUserName")
        try:
            return message.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadPadding("decrypted message is not UTF-8", field="Encrypt") from exc

    def encrypt(self, message: str) -> str:
        body = message.encode("utf-8")
        plain = (
            self._random_bytes(16) + struct.pack(">I", len(body)) + body + self.receive_id.encode()
        )
        padder = padding.PKCS7(BLOCK_BITS).padder()
        padded = padder.update(plain) + padder.finalize()
        encryptor = self._cipher().encryptor()
        return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode("ascii")

    # -- the three protocol operations ------------------------------------------------------------

    def verify_url(self, *, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """The GET that WeCom sends when the callback URL is saved: answer with the result."""
        if not echostr:
            raise MalformedCallback("echostr is missing", field="echostr")
        self.check_signature(
            msg_signature=msg_signature, timestamp=timestamp, nonce=nonce, encrypt=echostr
        )
        return self.decrypt(echostr)

    def decrypt_body(
        self, *, msg_signature: str, timestamp: str, nonce: str, body: str | bytes
    ) -> str:
        """Verify and decrypt a POSTed callback body; returns the decrypted XML text."""
        root = parse_xml(body, what="body")
        node = root.find("Encrypt")
        encrypt = (node.text or "").strip() if node is not None else ""
        if not encrypt:
            raise MalformedCallback("the body has no Encrypt element", field="Encrypt")
        self.check_signature(
            msg_signature=msg_signature, timestamp=timestamp, nonce=nonce, encrypt=encrypt
        )
        return self.decrypt(encrypt)

    def seal(self, message: str, *, timestamp: str, nonce: str) -> SignedEnvelope:
        """Encrypt and sign a message (a callback to deliver or a passive reply)."""
        encrypt = self.encrypt(message)
        return SignedEnvelope(
            encrypt=encrypt,
            msg_signature=self.signature(timestamp=timestamp, nonce=nonce, encrypt=encrypt),
            timestamp=timestamp,
            nonce=nonce,
        )
