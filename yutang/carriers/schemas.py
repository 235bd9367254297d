"""REST shapes of the carriers app."""

from __future__ import annotations

import datetime as dt
from typing import Any

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
