"""REST shapes of acquisition. Inputs forbid unknown fields (a typo is a 422 naming it)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from ninja import Schema
from pydantic import Field

from yutang.acquisition.models import ChannelType, CpaEvent, Platform, RoutingRule
from yutang.core.schemas import DbId, StrictInput

Fen = Annotated[int, Field(ge=0, le=10**12)]
Bp = Annotated[int, Field(ge=0, le=10_000)]
Window = Annotated[int, Field(ge=1, le=365)]


class ChannelIn(StrictInput):
    code: Annotated[str, Field(min_length=1, max_length=64)]
    name: Annotated[str, Field(min_length=1, max_length=120)]
    type: ChannelType
    platform: Platform | None = None
    owner_id: DbId | None = None
    partner_id: DbId | None = None
    starts_on: dt.date | None = None
    ends_on: dt.date | None = None
    hook_description: Annotated[str, Field(max_length=200)] = ""
    hook_coupon_code: Annotated[str, Field(max_length=64)] = ""
    hook_gift: Annotated[str, Field(max_length=120)] = ""
    tags: list[Annotated[str, Field(max_length=130)]] = Field(default_factory=list, max_length=20)
    cost_per_reach_fen: Fen = 0
    cost_per_add_fen: Fen = 0
    cpa_fen: Fen = 0
    cpa_event: CpaEvent = CpaEvent.ADDED
    cps_bp: Bp = 0
    attribution_window_days: Window = 30
    is_active: bool = True


class ChannelPatch(StrictInput):
    code: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    name: Annotated[str, Field(min_length=1, max_length=120)] | None = None
    type: ChannelType | None = None
    platform: Platform | None = None
    owner_id: DbId | None = None
    partner_id: DbId | None = None
    starts_on: dt.date | None = None
    ends_on: dt.date | None = None
    hook_description: Annotated[str, Field(max_length=200)] | None = None
    hook_coupon_code: Annotated[str, Field(max_length=64)] | None = None
    hook_gift: Annotated[str, Field(max_length=120)] | None = None
    tags: list[Annotated[str, Field(max_length=130)]] | None = Field(default=None, max_length=20)
    cost_per_reach_fen: Fen | None = None
    cost_per_add_fen: Fen | None = None
    cpa_fen: Fen | None = None
    cpa_event: CpaEvent | None = None
    cps_bp: Bp | None = None
    attribution_window_days: Window | None = None
    is_active: bool | None = None


class ChannelOut(Schema):
    id: int
    code: str
    name: str
    type: str
    platform: str
    owner_id: int | None
    partner_id: int | None
    starts_on: dt.date | None
    ends_on: dt.date | None
    hook_description: str
    hook_coupon_code: str
    hook_gift: str
    tags: list[str]
    cost_per_reach_fen: int
    cost_per_add_fen: int
    cpa_fen: int
    cpa_event: str
    cps_bp: int
    attribution_window_days: int
    is_active: bool


class CostIn(StrictInput):
    date: dt.date
    amount_fen: Fen
    note: Annotated[str, Field(max_length=200)] = ""


class CostOut(Schema):
    id: int
    date: dt.date
    amount_fen: int
    note: str


class ReachIn(StrictInput):
    date: dt.date
    count: Annotated[int, Field(ge=0, le=10**9)]
    batch_id: DbId | None = None


class ReachOut(Schema):
    id: int
    date: dt.date
    count: int
    batch_id: int | None


class ReachImportOut(Schema):
    applied: int
    errors: list[dict[str, Any]]


class MemberIn(StrictInput):
    account_id: DbId
    weight: Annotated[int, Field(ge=1, le=1000)] = 1
    is_backup: bool = False


class SlotIn(StrictInput):
    start: str
    end: str
    accounts: list[DbId]


class ScheduleIn(StrictInput):
    weekly: dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], list[SlotIn]] = Field(
        default_factory=dict
    )
    special: dict[str, list[SlotIn]] = Field(default_factory=dict)


class AttachmentIn(StrictInput):
    type: Literal["image", "link", "miniprogram"]
    url: Annotated[str, Field(max_length=500)] | None = None
    title: Annotated[str, Field(max_length=200)] | None = None
    description: Annotated[str, Field(max_length=500)] | None = None
    appid: Annotated[str, Field(max_length=64)] | None = None
    page: Annotated[str, Field(max_length=500)] | None = None
    media_id: Annotated[str, Field(max_length=200)] | None = None


class LiveCodeIn(StrictInput):
    channel_id: DbId
    name: Annotated[str, Field(min_length=1, max_length=120)]
    rule: RoutingRule
    members: list[MemberIn] = Field(min_length=1, max_length=200)
    store_id: DbId | None = None
    partner_id: DbId | None = None
    schedule: ScheduleIn | None = None
    welcome_text: Annotated[str, Field(max_length=2000)] = ""
    welcome_attachments: list[AttachmentIn] = Field(default_factory=list, max_length=9)
    is_active: bool = True


class LiveCodePatch(StrictInput):
    name: Annotated[str, Field(min_length=1, max_length=120)] | None = None
    rule: RoutingRule | None = None
    members: list[MemberIn] | None = Field(default=None, min_length=1, max_length=200)
    store_id: DbId | None = None
    partner_id: DbId | None = None
    schedule: ScheduleIn | None = None
    welcome_text: Annotated[str, Field(max_length=2000)] | None = None
    welcome_attachments: list[AttachmentIn] | None = Field(default=None, max_length=9)
    is_active: bool | None = None


class MemberOut(Schema):
    account_id: int
    weight: int
    is_backup: bool


class LiveCodeOut(Schema):
    id: int
    channel_id: int
    name: str
    store_id: int | None
    partner_id: int | None
    rule: str
    state: str
    landing_path: str
    schedule: dict[str, Any]
    welcome_text: str
    welcome_attachments: list[dict[str, Any]]
    members: list[MemberOut]
    is_active: bool
    carrier_qr_url: str
    carrier_members: list[str]
    carrier_synced_at: dt.datetime | None
    carrier_sync_error: str

    @staticmethod
    def resolve_members(obj: Any) -> list[Any]:
        return list(obj.members.all())

    @staticmethod
    def resolve_landing_path(obj: Any) -> str:
        return f"/c/{obj.public_token}/"


class CarrierSyncOut(Schema):
    status: str
    user_ids: list[str]
    message: str


class CapacityOut(Schema):
    account_id: int
    display_name: str
    is_backup: bool
    weight: int
    cap: int | None
    assigned: int
    added: int
    has_room: bool
    on_duty: bool


class ShortLinkIn(StrictInput):
    channel_id: DbId | None = None
    live_code_id: DbId | None = None
    batch_id: DbId | None = None
    customer_id: DbId | None = None
    target_url: Annotated[str, Field(max_length=1000)] = ""
    expires_at: dt.datetime | None = None


class ShortLinkOut(Schema):
    id: int
    code: str
    path: str
    channel_id: int | None
    live_code_id: int | None
    batch_id: int | None
    target_url: str
    expires_at: dt.datetime | None

    @staticmethod
    def resolve_path(obj: Any) -> str:
        return f"/l/{obj.code}"


class BatchIn(StrictInput):
    code: Annotated[str, Field(min_length=1, max_length=32)]
    name: Annotated[str, Field(min_length=1, max_length=120)]
    cards_printed: Annotated[int, Field(ge=0, le=10**9)] = 0
    live_code_id: DbId | None = None


class BatchOut(Schema):
    id: int
    channel_id: int
    code: str
    name: str
    cards_printed: int
    live_code_id: int | None


class PartnerIn(StrictInput):
    name: Annotated[str, Field(min_length=1, max_length=120)]
    kind: Literal["kol", "koc"] = "kol"
    phone: Annotated[str, Field(max_length=32)] = ""
    contact_note: Annotated[str, Field(max_length=200)] = ""
    cps_bp: Bp = 0
    cpa_fen: Fen = 0
    cpa_event: CpaEvent = CpaEvent.ADDED
    fixed_fee_fen: Fen = 0
    attribution_window_days: Window = 30
    is_active: bool = True


class PartnerPatch(StrictInput):
    name: Annotated[str, Field(min_length=1, max_length=120)] | None = None
    kind: Literal["kol", "koc"] | None = None
    phone: Annotated[str, Field(max_length=32)] | None = None
    contact_note: Annotated[str, Field(max_length=200)] | None = None
    cps_bp: Bp | None = None
    cpa_fen: Fen | None = None
    cpa_event: CpaEvent | None = None
    fixed_fee_fen: Fen | None = None
    attribution_window_days: Window | None = None
    is_active: bool | None = None


class PartnerOut(Schema):
    id: int
    name: str
    kind: str
    phone: str
    contact_note: str
    cps_bp: int
    cpa_fen: int
    cpa_event: str
    fixed_fee_fen: int
    attribution_window_days: int
    is_active: bool


class SettlementIn(StrictInput):
    period_start: dt.date
    period_end: dt.date


class SettlementOut(Schema):
    id: int
    partner_id: int
    period_start: dt.date
    period_end: dt.date
    status: str
    figures: dict[str, Any]
    amount_owed_fen: int
    computed_at: dt.datetime
    locked_at: dt.datetime | None


class ReportFilters(Schema):
    date_from: dt.date
    date_to: dt.date
    granularity: Literal["none", "week", "month"] = "none"


class AlertOut(Schema):
    id: int
    live_code_id: int
    kind: str
    day: dt.date
    message: str
    created_at: dt.datetime
    resolved_at: dt.datetime | None
