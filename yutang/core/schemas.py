"""Pydantic schemas of the core app: brand settings and the REST shapes.

Input schemas forbid unknown fields so that a typo in a request is a 422 naming the field,
never a silently ignored key."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal
from typing import Annotated, Literal

from ninja import Schema
from pydantic import ConfigDict, Field, field_validator

from yutang.core.models import CarrierAccount, Store
from yutang.core.pagination import MAX_ID
from yutang.core.permissions import Role

#: A row id: what the databases can store, so a huge number is a 422, not a crash.
DbId = Annotated[int, Field(ge=1, le=MAX_ID)]
#: A link shown in the console (avatars, covers): http(s) only, never `javascript:`.
#: (Spelled without an inline `(?i)` flag so that the OpenAPI pattern works in JavaScript too.)
WebUrl = Annotated[str, Field(max_length=500, pattern=r"^([Hh][Tt][Tt][Pp][Ss]?://\S+)?$")]


class StrictInput(Schema):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _check_time_zone(value: str) -> str:
    if value not in zoneinfo.available_timezones():
        raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Asia/Shanghai")
    return value


class BrandSettings(StrictInput):
    """Brand-level switches. Later issues add their policies here."""

    hq_can_view_franchise_customers: bool = Field(
        default=False,
        description="HQ roles may read individual customers of franchise stores "
        "(franchise stores own their customers' data; off by default).",
    )
    merge_policy: Literal["auto", "review"] = Field(
        default="auto",
        description="`auto`: customers sharing a strong identity (phone, WeChat unionid, the "
        "brand's own id) merge at once; `review`: every conflict waits in the merge queue.",
    )
    staff_language: Literal["zh-hans", "en"] = Field(
        default="zh-hans",
        description="The language of what Yutang writes to the brand's staff on their "
        "carriers (overdue-task reminders).",
    )


# --- Brands ---------------------------------------------------------------------------------


class BrandOut(Schema):
    id: int
    name: str
    time_zone: str
    currency: str
    settings: BrandSettings
    is_sample: bool


class BrandUpdate(StrictInput):
    name: Annotated[str, Field(min_length=1, max_length=120)] | None = None
    time_zone: str | None = None
    settings: BrandSettings | None = None

    _tz = field_validator("time_zone")(lambda v: None if v is None else _check_time_zone(v))


# --- Stores ---------------------------------------------------------------------------------

StoreCode = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")]
Latitude = Annotated[Decimal, Field(ge=-90, le=90, max_digits=9, decimal_places=6)]
Longitude = Annotated[Decimal, Field(ge=-180, le=180, max_digits=9, decimal_places=6)]


class StoreIn(StrictInput):
    code: StoreCode
    name: Annotated[str, Field(min_length=1, max_length=120)]
    kind: Store.Kind = Store.Kind.DIRECT
    city: Annotated[str, Field(max_length=64)] = ""
    address: Annotated[str, Field(max_length=255)] = ""
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    is_active: bool = True


class StorePatch(StrictInput):
    code: StoreCode | None = None
    name: Annotated[str, Field(min_length=1, max_length=120)] | None = None
    kind: Store.Kind | None = None
    city: Annotated[str, Field(max_length=64)] | None = None
    address: Annotated[str, Field(max_length=255)] | None = None
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    is_active: bool | None = None


class StoreOut(Schema):
    id: int
    code: str
    name: str
    kind: str
    city: str
    address: str
    latitude: Decimal | None
    longitude: Decimal | None
    is_active: bool
    created_at: dt.datetime
    updated_at: dt.datetime


# --- Staff ----------------------------------------------------------------------------------

Username = Annotated[str, Field(min_length=3, max_length=150, pattern=r"^[\w.@+-]+$")]


class StaffIn(StrictInput):
    username: Username
    display_name: Annotated[str, Field(min_length=1, max_length=80)]
    role: Role
    store_ids: list[DbId] = Field(default_factory=list)
    password: Annotated[str, Field(min_length=10, max_length=128)] | None = None
    phone: Annotated[str, Field(max_length=32)] = ""


class StaffPatch(StrictInput):
    display_name: Annotated[str, Field(min_length=1, max_length=80)] | None = None
    role: Role | None = None
    store_ids: list[DbId] | None = None
    password: Annotated[str, Field(min_length=10, max_length=128)] | None = None
    phone: Annotated[str, Field(max_length=32)] | None = None
    is_active: bool | None = None


class StaffOut(Schema):
    id: int
    username: str
    display_name: str
    role: str
    store_ids: list[int]
    phone: str = Field(description="Masked unless the caller may see identifiers")
    is_active: bool
    created_at: dt.datetime


class StaffCreated(StaffOut):
    initial_password: str | None = Field(
        default=None, description="Only when Yutang generated the password; shown once"
    )


# --- Carrier accounts -----------------------------------------------------------------------


class CarrierAccountIn(StrictInput):
    kind: CarrierAccount.Kind
    external_id: Annotated[str, Field(min_length=1, max_length=128)]
    display_name: Annotated[str, Field(min_length=1, max_length=80)]
    staff_id: DbId | None = None
    store_id: DbId | None = None
    avatar_url: WebUrl = ""
    signature: Annotated[str, Field(max_length=120)] = ""
    cover_url: WebUrl = ""
    persona: Annotated[str, Field(max_length=4000)] = ""
    daily_add_cap: Annotated[int, Field(ge=0, le=100000)] | None = None
    is_active: bool = True


class CarrierAccountPatch(StrictInput):
    display_name: Annotated[str, Field(min_length=1, max_length=80)] | None = None
    staff_id: DbId | None = None
    store_id: DbId | None = None
    avatar_url: WebUrl | None = None
    signature: Annotated[str, Field(max_length=120)] | None = None
    cover_url: WebUrl | None = None
    persona: Annotated[str, Field(max_length=4000)] | None = None
    daily_add_cap: Annotated[int, Field(ge=0, le=100000)] | None = None
    is_active: bool | None = None


class CarrierAccountOut(Schema):
    id: int
    kind: str
    external_id: str = Field(description="Masked unless the caller may see identifiers")
    display_name: str
    staff_id: int | None
    store_id: int | None
    avatar_url: str
    signature: str
    cover_url: str
    persona: str
    daily_add_cap: int | None
    is_active: bool
    created_at: dt.datetime


# --- Tokens ---------------------------------------------------------------------------------


class TokenIn(StrictInput):
    name: Annotated[str, Field(min_length=1, max_length=80)]


class TokenOut(Schema):
    id: int
    name: str
    prefix: str
    staff_id: int
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="The secret token; shown only in this response")


# --- Audit ----------------------------------------------------------------------------------


class AuditOut(Schema):
    id: int
    actor_id: int | None
    actor_label: str
    action: str
    target_type: str
    target_id: str
    target_label: str
    store_id: int | None
    changes: dict[str, object]
    created_at: dt.datetime


class AuditPage(Schema):
    items: list[AuditOut]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page")
