"""HMAC-SHA256 signatures with a timestamp, for outgoing webhook/SMS calls and for every
JSON inbound callback (sandbox, webhook, SMS, email relay).

Header `X-Yutang-Signature: t=<unix seconds>,v1=<hex hmac>` where the HMAC-SHA256 key is the
shared secret and the signed text is `<t>.<raw body>`. A receiver recomputes it, compares in
constant time and refuses timestamps more than TOLERANCE away from its clock (replay window).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from yutang.core import clock

HEADER = "X-Yutang-Signature"
TOLERANCE_SECONDS = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def sign(secret: str, body: bytes) -> dict[str, str]:
    return {HEADER: signature(secret, int(clock.now().timestamp()), body)}


def verify(secret: str, headers: Mapping[str, str], body: bytes) -> str | None:
    """None when valid, else why not (never reveals the expected value)."""
    if not secret:
        return "no callback secret is configured for this account"
    header = next((v for k, v in headers.items() if k.lower() == HEADER.lower()), "")
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        return f"missing or malformed {HEADER} header"
    if abs(clock.now().timestamp() - timestamp) > TOLERANCE_SECONDS:
        return "signature timestamp outside the 5-minute window"
    expected = signature(secret, timestamp, body).split("v1=", 1)[1]
    if not hmac.compare_digest(expected, parts.get("v1", "")):
        return "signature does not match"
    return None
