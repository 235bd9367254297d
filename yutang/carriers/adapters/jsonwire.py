"""The JSON inbound contract shared by the sandbox, webhook, SMS and email-relay adapters
(documented in docs/messaging.md):

    {"events": [{"id": "<unique per event>", "type": "contact.added", "occurred_at": "...",
                 ...type-specific fields}]}

Types and fields: contact.added (contact, display_name, state, welcome_code, identities),
contact.deleted (contact, by), message.received (contact, text, message_id),
delivery.receipt (message_id, status, reason), group.joined / group.left (contact,
group_id), link.clicked (contact, link, message_id). The body is signed (signing.py)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from yutang.carriers import signing
from yutang.carriers.base import AccountConfig, CallbackRejected, CallbackRequest, ParsedCallback
from yutang.carriers.inbound import (
    MAX_STATE_CHARS,
    ContactAdded,
    ContactDeleted,
    DeliveryReceipt,
    GroupJoined,
    GroupLeft,
    IdentityRef,
    InboundFact,
    LinkClicked,
    MessageReceived,
)

MAX_EVENTS = 500


def _text(
    event: Mapping[str, Any], name: str, where: str, *, required: bool = True, limit: int = 200
) -> str:
    value = event.get(name, "")
    if value is None:
        value = ""
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > limit:
        need = "required text" if required else "text"
        raise CallbackRejected(f"{where}.{name}: {need} of at most {limit} characters")
    return value.strip()


def _time(event: Mapping[str, Any], where: str) -> dt.datetime:
    raw = event.get("occurred_at")
    try:
        moment = dt.datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise CallbackRejected(f"{where}.occurred_at: an ISO 8601 time with a UTC offset")
    return moment


def _fact(config: AccountConfig, event: Mapping[str, Any], where: str) -> InboundFact:
    kind = event.get("type")
    ids = {"brand_id": config.brand_id, "account_id": config.account_id}
    at = _time(event, where)
    if kind == "contact.added":
        raw_ids = event.get("identities") or []
        if not isinstance(raw_ids, list) or len(raw_ids) > 20:
            raise CallbackRejected(f"{where}.identities: a list of at most 20")
        identities = []
        for n, raw in enumerate(raw_ids):
            if not isinstance(raw, Mapping):
                raise CallbackRejected(f"{where}.identities.{n}: an object")
            identities.append(
                IdentityRef(
                    kind=_text(raw, "kind", f"{where}.identities.{n}", limit=32),
                    value=_text(raw, "value", f"{where}.identities.{n}"),
                    namespace=_text(
                        raw, "namespace", f"{where}.identities.{n}", required=False, limit=64
                    ),
                )
            )
        return ContactAdded(
            **ids,
            external_id=_text(event, "contact", where),
            occurred_at=at,
            display_name=_text(event, "display_name", where, required=False, limit=120),
            state=_text(event, "state", where, required=False, limit=MAX_STATE_CHARS),
            welcome_code=_text(event, "welcome_code", where, required=False),
            identities=tuple(identities),
        )
    if kind == "contact.deleted":
        by = event.get("by", "customer")
        if by not in ("customer", "staff"):
            raise CallbackRejected(f"{where}.by: customer or staff")
        return ContactDeleted(
            **ids, external_id=_text(event, "contact", where), occurred_at=at, by=by
        )
    if kind == "message.received":
        return MessageReceived(
            **ids,
            external_id=_text(event, "contact", where),
            occurred_at=at,
            text=_text(event, "text", where, required=False, limit=4000),
            carrier_message_id=_text(event, "message_id", where, required=False),
        )
    if kind == "delivery.receipt":
        status = event.get("status")
        if status not in ("delivered", "read", "failed"):
            raise CallbackRejected(f"{where}.status: delivered, read or failed")
        return DeliveryReceipt(
            **ids,
            carrier_message_id=_text(event, "message_id", where),
            status=status,
            occurred_at=at,
            reason=_text(event, "reason", where, required=False, limit=500),
        )
    if kind in ("group.joined", "group.left"):
        cls = GroupJoined if kind == "group.joined" else GroupLeft
        return cls(
            **ids,
            external_id=_text(event, "contact", where),
            group_id=_text(event, "group_id", where),
            occurred_at=at,
        )
    if kind == "link.clicked":
        return LinkClicked(
            **ids,
            external_id=_text(event, "contact", where),
            occurred_at=at,
            link=_text(event, "link", where, limit=500),
            carrier_message_id=_text(event, "message_id", where, required=False),
        )
    raise CallbackRejected(f"{where}.type: unknown inbound type {kind!r}")


def parse(config: AccountConfig, request: CallbackRequest, secret: str) -> ParsedCallback:
    problem = signing.verify(secret, request.headers, request.body)
    if problem is not None:
        raise CallbackRejected(problem)
    try:
        payload = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        raise CallbackRejected("body: not valid JSON") from None
    events = payload.get("events") if isinstance(payload, dict) else None
    if not isinstance(events, list) or not events or len(events) > MAX_EVENTS:
        raise CallbackRejected(f"events: a list of 1 to {MAX_EVENTS} objects")
    facts = []
    for n, event in enumerate(events):
        where = f"events.{n}"
        if not isinstance(event, Mapping):
            raise CallbackRejected(f"{where}: an object")
        facts.append((_text(event, "id", where), _fact(config, event, where)))
    return ParsedCallback(facts=facts)


def encode(events: list[dict[str, Any]]) -> bytes:
    return json.dumps({"events": events}, ensure_ascii=False, default=str).encode()
