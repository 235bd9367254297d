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
