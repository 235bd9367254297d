"""REST shapes of the carriers app."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from ninja import Schema
from pydantic import Field

from yutang.core.schemas import StrictInput


class ConnectIn(StrictInput):
    credentials: dict[str, Any] = Field(
        default_factory=dict, description="Secrets; stored encrypted and never shown again."
    )
    settings: dict[str, Any] = Field(default_factory=dict, description="Non-secret settings.")


class CarrierStatusOut(Schema):
    account_id: int
    kind: str
    display_name: str
    status: str
    last_error: str
    checked_at: dt.datetime | None
    capabilities: list[str]
    configured: list[str]


class CallbackOut(Schema):
    accepted: int


class HandoverIn(StrictInput):
    from_account_id: int
    to_account_id: int
    customer_ids: list[int] | None = Field(
        default=None, description="Customers to hand over; all active contacts when omitted."
    )
    kind: Literal["in_service", "resigned"] = "in_service"
    message: str = Field(default="", max_length=200, description="What the customers see.")


class HandoverOut(Schema):
    id: int
    kind: str
    from_account_id: int
    to_account_id: int
    created_at: dt.datetime
    counts: dict[str, int]


class MomentIn(StrictInput):
    account_ids: list[int] = Field(description="The WeCom accounts whose members publish it.")
    content: dict[str, Any]
    kind: Literal["service", "marketing"] = "marketing"


class MomentSenderOut(Schema):
    account_id: int
    status: str
    published_at: dt.datetime | None


class MomentOut(Schema):
    id: int
    status: str
    kind: str
    moment_id: str
    error: str
    created_at: dt.datetime
    senders: list[MomentSenderOut]


class CorpTagOut(Schema):
    tag_id: int
    corp_tag_id: str
    group_name: str
    name: str


class PulledOut(Schema):
    changed: int
