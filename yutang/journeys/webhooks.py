"""Signed webhook calls from journey steps.

Each request is a JSON POST with headers:

- ``X-Yutang-Timestamp``: Unix seconds when signed;
- ``X-Yutang-Signature``: ``sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>" with the secret>``;
- ``Idempotency-Key``: the same for every retry of the same step, so receivers can dedupe.

Receivers should reject timestamps older than five minutes (``verify`` does)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from typing import Any

import httpx

TIMEOUT_SECONDS = 10.0
TOLERANCE = dt.timedelta(minutes=5)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, now: dt.datetime) -> bool:
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(now.timestamp() - ts) > TOLERANCE.total_seconds():
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


class WebhookFailed(Exception):
    pass


def call(*, url: str, secret: str, payload: dict[str, Any], key: str, at: dt.datetime) -> int:
    body = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()
    timestamp = int(at.timestamp())
    headers = {
        "Content-Type": "application/json",
        "X-Yutang-Timestamp": str(timestamp),
        "X-Yutang-Signature": sign(secret, timestamp, body),
        "Idempotency-Key": key,
        "User-Agent": "yutang-journeys",
    }
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        raise WebhookFailed(f"webhook unreachable: {type(exc).__name__}") from None
    if response.status_code >= 300:
        raise WebhookFailed(f"webhook answered HTTP {response.status_code}")
    return response.status_code
