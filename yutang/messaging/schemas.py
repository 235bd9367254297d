"""REST shapes of the messaging app."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from ninja import Schema
from pydantic import Field

from yutang.core.schemas import DbId, StrictInput

Kind = Literal["service", "marketing"]


class SendIn(StrictInput):
    customer_id: DbId
    account_id: DbId
    kind: Kind
    content: dict[str, Any]
    idempotency_key: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    not_after: dt.datetime | None = None


class BroadcastIn(StrictInput):
    account_id: DbId
    kind: Kind = "marketing"
    content: dict[str, Any]
    customer_ids: Annotated[list[DbId], Field(min_length=1, max_length=100_000)]
    name: Annotated[str, Field(max_length=120)] = ""
    not_after: dt.datetime | None = None


class PreviewIn(StrictInput):
    account_id: DbId
    kind: Kind = "marketing"
    content: dict[str, Any]
    customer_ids: Annotated[list[DbId], Field(min_length=1, max_length=100_000)]


class PreviewOut(Schema):
    total: int
    would_send: int
    blocked: dict[str, int]
    deferred: dict[str, int]
    expired: dict[str, int]


class MessageOut(Schema):
    id: int
    customer_id: int
    account_id: int
    carrier: str
    kind: str
    content: dict[str, Any]
    cause: str
    broadcast_id: int | None
    staff_id: int | None
    status: str
    rule: str
    reason: str
    idempotency_key: str
    attempts: int
    due_at: dt.datetime
    not_after: dt.datetime | None
    created_at: dt.datetime
    sent_at: dt.datetime | None
    delivered_at: dt.datetime | None
    read_at: dt.datetime | None


class MessagePage(Schema):
    items: list[MessageOut]
    next_cursor: str | None


class BroadcastOut(Schema):
    id: int
    account_id: int
    kind: str
    total: int
    created_at: dt.datetime


class ConfirmOut(Schema):
    sent: int
