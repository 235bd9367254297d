"""Shared HTTP handling for the webhook and SMS adapters: signed JSON POST, error mapping."""

from __future__ import annotations

import json
from typing import Any

import httpx

from yutang.carriers import signing
from yutang.carriers.base import CarrierError

TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def post_signed(
    url: str, secret: str, payload: dict[str, Any], extra_headers: dict[str, str] | None = None
) -> dict[str, Any]:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        **signing.sign(secret, body),
        **(extra_headers or {}),
    }
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=TIMEOUT)
    except httpx.HTTPError as exc:
        raise CarrierError(f"cannot reach {url}: {type(exc).__name__}", transient=True) from None
    try:
        data = response.json() if response.content else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    if response.status_code < 300 or response.status_code == 409:
        return data
    raw_error = data.get("error")
    error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
    reason = str(error.get("message") or response.reason_phrase or "error")[:400]
    code = str(error.get("code") or response.status_code)
    transient = response.status_code in (408, 425, 429) or response.status_code >= 500
    raise CarrierError(f"HTTP {response.status_code}: {reason}", transient=transient, code=code)
