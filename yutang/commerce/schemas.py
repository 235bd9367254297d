"""REST shapes of commerce."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from ninja import Schema
from pydantic import Field

from yutang.core.schemas import StrictInput
from yutang.customers.schemas import Id, IdentityIn

Fen = Annotated[int, Field(ge=0, le=10**12)]


class ProductIn(StrictInput):
    sku: Annotated[str, Field(min_length=1, max_length=64)]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    category: Annotated[str, Field(max_length=64)] = ""
    price_fen: Fen
    usage_cycle_days: Annotated[int, Field(ge=1, le=3650)] | None = None
    is_active: bool = True


class ProductOut(Schema):
    id: int
    sku: str
    name: str
    category: str
    price_fen: int
    usage_cycle_days: int | None
    is_active: bool


class OrderItemIn(StrictInput):
    sku: Annotated[str, Field(min_length=1, max_length=64)]
    quantity: Annotated[int, Field(ge=1, le=100000)] = 1
    price_fen: Fen | None = None


class OrderIn(StrictInput):
    source: str
    external_id: Annotated[str, Field(min_length=1, max_length=100)]
    paid_at: dt.datetime
    amount_fen: Fen
    discount_fen: Fen = 0
    shipping_fen: Fen = 0
    identities: list[IdentityIn] = Field(default_factory=list, max_length=20)
    customer_id: Id | None = None
    items: list[OrderItemIn] = Field(default_factory=list, max_length=500)
    store_code: Annotated[str, Field(max_length=32)] | None = None
    coupon_code: Annotated[str, Field(max_length=64)] = ""


class RefundIn(StrictInput):
    external_id: Annotated[str, Field(min_length=1, max_length=100)]
    amount_fen: Annotated[int, Field(ge=1, le=10**12)]
    refunded_at: dt.datetime
    reason: Annotated[str, Field(max_length=200)] = ""


class RefundOut(Schema):
    id: int
    external_id: str
    amount_fen: int
    refunded_at: dt.datetime
    reason: str


class OrderOut(Schema):
    id: int
    source: str
    external_id: str
    customer_id: int
    paid_at: dt.datetime
    amount_fen: int
    discount_fen: int
    shipping_fen: int
    refunded_fen: int
    items: list[dict[str, Any]]
    store_id: int | None
    staff_id: int | None
    attributed_store_id: int | None
    channel: str
    coupon_code: str
    refunds: list[RefundOut]


class OrderPage(Schema):
    items: list[OrderOut]
    next_cursor: str | None = None
