"""The brand's touch policy: caps, quiet hours, platform limits, marketing share, duplicate
window, unsubscribe keywords. Defaults follow docs/messaging.md (seeds 001, 003, 004)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field, field_validator

from yutang.core.schemas import StrictInput

Count = Annotated[int, Field(ge=0, le=1000)]
HHMM = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]


class CarrierCap(StrictInput):
    per_day: Count | None = None
    per_week: Count | None = None


class PlatformLimit(StrictInput):
    """Messages per customer the platform allows through one carrier."""

    per_day: Count | None = None
    per_week: Count | None = None
    per_month: Count | None = None
    days_in_month: bool = Field(
        default=False, description="At most as many as there are days in the month (WeCom)."
    )
    count_service: bool = Field(
        default=True,
        description=(
            "Service messages count against the limit and are held to it too: WeCom counts "
            "every mass message (企业群发), whatever it says. Welcome messages never count."
        ),
    )


class PolicySettings(StrictInput):
    marketing_per_day: Count = 1
    marketing_per_week: Count = Field(default=3, description="Rolling 7 days.")
    service_per_day: Count = Field(default=5, description="Service messages: capped apart.")
    carrier_caps: dict[str, CarrierCap] = Field(default_factory=dict)
    quiet_hours_enabled: bool = True
    quiet_start: HHMM = "21:30"
    quiet_end: HHMM = "08:30"
    platform_limits: dict[str, PlatformLimit] = Field(
        default_factory=lambda: {"wecom": PlatformLimit(days_in_month=True)}
    )
    marketing_share_max: Annotated[float, Field(ge=0, le=1)] = 0.2
    marketing_share_window_days: Annotated[int, Field(ge=1, le=90)] = 7
    marketing_share_min_posts: Annotated[int, Field(ge=0, le=100000)] = 20
    marketing_share_scope: Literal["broadcasts", "all"] = Field(
        default="broadcasts",
        description=(
            "Which of an account's messages the marketing share counts and limits: its posts "
            "(broadcasts 群发 and campaigns: one text to many customers), or every message it "
            "sends. "
            "One-to-one messages (journeys, manual) are limited by the frequency caps."
        ),
    )
    duplicate_window_days: Annotated[int, Field(ge=0, le=365)] = 7
    defer_max_days: Annotated[int, Field(ge=1, le=30)] = Field(
        default=3, description="A deferred message without its own deadline expires after this."
    )
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 5
    confirm_timeout_hours: Annotated[int, Field(ge=1, le=168)] = 24
    unsubscribe_keywords: list[Annotated[str, Field(min_length=1, max_length=20)]] = Field(
        default_factory=lambda: ["退订", "TD", "T", "取消", "unsubscribe"]
    )
    unsubscribe_confirmation: Annotated[str, Field(max_length=200)] = (
        "您已退订营销消息，我们不会再向您推送促销信息。"
    )
    default_welcome: Annotated[str, Field(max_length=1000)] = ""

    @field_validator("carrier_caps", "platform_limits")
    @classmethod
    def _known_carriers(cls, value: dict[str, object]) -> dict[str, object]:
        known = {"wecom", "official_account", "sms", "email", "webhook", "sandbox"}
        for key in value:
            if key not in known:
                raise ValueError(f"unknown carrier {key!r}; use one of {', '.join(sorted(known))}")
        return value

    def quiet_window(self) -> tuple[dt.time, dt.time] | None:
        if not self.quiet_hours_enabled or self.quiet_start == self.quiet_end:
            return None
        return dt.time.fromisoformat(self.quiet_start), dt.time.fromisoformat(self.quiet_end)
