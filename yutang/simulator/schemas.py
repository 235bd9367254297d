"""REST shapes of the simulator's what-if."""

from __future__ import annotations

from typing import Annotated

from ninja import Schema
from pydantic import Field

from yutang.core.schemas import StrictInput


class WhatIfIn(StrictInput):
    scenario_yaml: Annotated[str, Field(min_length=1, max_length=100_000)]
    compare_yaml: Annotated[str, Field(min_length=1, max_length=100_000)] | None = None
    days: Annotated[int, Field(ge=1, le=3650)] | None = None
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    scale: Annotated[float, Field(gt=0, le=10)] | None = None


class OutcomeOut(Schema):
    scenario: str
    seed: int
    days: int
    scale: float
    pool: int
    adds: int
    deletions: int
    monthly_deletion_rate: float
    first_order_rate: float
    repurchase_rate: float
    orders: int
    gmv_fen: int
    refund_fen: int
    cost_fen: int
    cost_per_kept_contact_fen: float
    referral_adds: int
    blocked_marketing: int
    target_pool: int
    target_gmv_fen: int
    pool_by_day: list[int]
    gmv_fen_by_day: list[int]


class WhatIfOut(Schema):
    results: list[OutcomeOut]
