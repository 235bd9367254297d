"""REST shapes of the event log."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ninja import Schema
from pydantic import Field


class EventBatchIn(Schema):
    # Items are validated one by one by the service, so one bad event rejects only itself.
    events: list[dict[str, Any]] = Field(max_length=1000)


class EventResultOut(Schema):
    index: int
    status: str
    event_id: int | None
    customer_id: int | None
    error: dict[str, str | None] | None


class EventBatchOut(Schema):
    stored: int
    duplicates: int
    rejected: int
    results: list[EventResultOut]


class EventOut(Schema):
    id: int
    customer_id: int
    type: str
    occurred_at: dt.datetime
    received_at: dt.datetime
    source: str
    idempotency_key: str
    properties: dict[str, Any]


class EventPage(Schema):
    items: list[EventOut]
    next_cursor: str | None = None


class TimelineOut(Schema):
    at: dt.datetime
    kind: str
    title: str
    detail: dict[str, Any]
