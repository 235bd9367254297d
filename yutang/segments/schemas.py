"""REST shapes of the segments app. A rule is JSON (see docs/segments.md); the service
validates it and names the JSON path of any bad node."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from ninja import Schema
from pydantic import Field

from yutang.core.schemas import StrictInput
from yutang.customers.schemas import CustomerOut

RuleJson = Annotated[
    dict[str, Any],
    Field(
        description='A rule tree: {"and": [...]}, {"or": [...]}, {"not": {...}} or a '
        'condition {"kind": ...}. See docs/segments.md.'
    ),
]


class SegmentIn(StrictInput):
    name: Annotated[str, Field(min_length=1, max_length=80)]
    kind: Literal["dynamic", "static"] = "dynamic"
    rule: RuleJson | None = None
    description: Annotated[str, Field(max_length=500)] = ""
    refresh_minutes: int | None = None


class SegmentPatch(StrictInput):
    name: Annotated[str, Field(min_length=1, max_length=80)] | None = None
    rule: RuleJson | None = None
    description: Annotated[str, Field(max_length=500)] | None = None
    refresh_minutes: int | None = None


class SegmentOut(Schema):
    id: int
    name: str
    kind: str
    rule: dict[str, Any] | None
    description: str
    refresh_minutes: int | None
    refreshed_at: dt.datetime | None
    member_count: int
    created_at: dt.datetime
    updated_at: dt.datetime


class RuleIn(StrictInput):
    rule: RuleJson


class PreviewOut(Schema):
    count: int
    sample: list[CustomerOut]
    elapsed_ms: float


class MemberPage(Schema):
    items: list[CustomerOut]
    next_cursor: str | None = None


class RefreshOut(Schema):
    segment_id: int
    entered: int
    exited: int
    members: int


class SnapshotIn(StrictInput):
    name: Annotated[str, Field(min_length=1, max_length=80)]


class UploadOut(Schema):
    members: int


class RfmRow(Schema):
    rfm_class: str
    name: str
    customers: int


class StageRow(Schema):
    stage: str
    customers: int


class RecomputeOut(Schema):
    rfm_customers: int
    rfm_ms: float
    lifecycle_customers: int
    lifecycle_changed: int


class SettingsIn(StrictInput):
    rfm_method: Literal["quintile", "thresholds"] | None = None
    recency_days: list[int] | None = None
    frequency_orders: list[int] | None = None
    monetary_fen: list[int] | None = None
    repeat_min_orders: int | None = None
    loyal_min_orders: int | None = None
    default_cycle_days: int | None = None
    at_risk_slack_days: int | None = None
    lost_inactive_days: int | None = None


class SettingsOut(Schema):
    rfm_method: str
    recency_days: list[int]
    frequency_orders: list[int]
    monetary_fen: list[int]
    repeat_min_orders: int
    loyal_min_orders: int
    default_cycle_days: int | None
    at_risk_slack_days: int
    lost_inactive_days: int
    rfm_computed_at: dt.datetime | None
    lifecycle_computed_at: dt.datetime | None


class AutoTagIn(StrictInput):
    name: Annotated[str, Field(min_length=1, max_length=80)]
    rule: RuleJson
    tag_id: int
    is_active: bool = True


class AutoTagPatch(StrictInput):
    name: Annotated[str, Field(min_length=1, max_length=80)] | None = None
    rule: RuleJson | None = None
    tag_id: int | None = None
    is_active: bool | None = None


class AutoTagOut(Schema):
    id: int
    name: str
    rule: dict[str, Any]
    tag_id: int
    is_active: bool
    applied_at: dt.datetime | None
    created_at: dt.datetime


class ApplyOut(Schema):
    rule_id: int
    tagged: int
    untagged: int


class PortraitOut(Schema):
    rfm: dict[str, Any] | None
    lifecycle_stage: str
    lifecycle_changed_at: dt.datetime | None
    segments: list[dict[str, Any]]
    auto_tags: list[dict[str, Any]]
    predicted_next_purchase: dt.date | None
