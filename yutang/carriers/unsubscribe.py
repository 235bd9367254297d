"""Signed, expiring, per-customer unsubscribe links (RFC 8058 one-click, for email).

A token names the carrier account and the customer by their internal ids — never an email
address, phone number or name — with its expiry, and an HMAC-SHA256 over all three keyed by
Django's SECRET_KEY (`salted_hmac`, its own salt). A forged, altered or expired token is
refused. The link is ``{YUTANG_PUBLIC_URL}/u/{token}``; the messaging app serves it (GET: a
confirmation page, POST ``List-Unsubscribe=One-Click``: withdraw marketing consent)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac

from django.conf import settings
from django.utils.crypto import salted_hmac

from yutang.core import clock

SALT = "yutang.carriers.unsubscribe.v1"
#: How long a link in a sent email keeps working.
LIFETIME = dt.timedelta(days=180)


class InvalidToken(Exception):
    """The token was not made by us, was altered, or has expired."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(payload: str) -> bytes:
    return salted_hmac(SALT, payload, algorithm="sha256").digest()[:16]


def make_token(account_id: int, customer_id: int, *, now: dt.datetime | None = None) -> str:
    expires = int(((now or clock.now()) + LIFETIME).timestamp())
    payload = f"{account_id}.{customer_id}.{expires}"
    return f"{_b64(payload.encode())}.{_b64(_mac(payload))}"


def read_token(token: str) -> tuple[int, int]:
    """(account id, customer id) of a valid token; InvalidToken otherwise."""
    try:
        encoded, mac = token.split(".")
        payload = _unb64(encoded).decode()
        account_id, customer_id, expires = (int(p) for p in payload.split("."))
        given = _unb64(mac)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidToken("malformed") from None
    if not hmac.compare_digest(given, _mac(payload)):
        raise InvalidToken("bad signature")
    if clock.now().timestamp() > expires:
        raise InvalidToken("expired")
    return account_id, customer_id


def url_for(account_id: int, customer_id: int) -> str:
    """The one-click unsubscribe link, or "" when YUTANG_PUBLIC_URL is not set."""
    base = getattr(settings, "PUBLIC_URL", "")
    if not base:
        return ""
    return f"{base}/u/{make_token(account_id, customer_id)}"
