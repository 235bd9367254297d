"""REST handlers for products, orders and refunds."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Status

from yutang.commerce import services
from yutang.commerce.schemas import (
    OrderIn,
    OrderOut,
    OrderPage,
    ProductIn,
    ProductOut,
    RefundIn,
    RefundOut,
)
from yutang.core.apiauth import actor
from yutang.customers.schemas import Id

router = Router(tags=["commerce"])


@router.get("/products", response=list[ProductOut])
def list_products(request: HttpRequest) -> object:
    return services.list_products(actor=actor(request))


@router.put("/products", response=ProductOut)
def upsert_product(request: HttpRequest, payload: ProductIn) -> object:
    viewer = actor(request)
    return services.upsert_product(actor=viewer, brand=viewer.brand, **payload.model_dump())


@router.post("/orders", response={200: OrderOut, 201: OrderOut})
def post_order(request: HttpRequest, payload: OrderIn) -> object:
    """Record a paid order; posting the same (source, external_id) again changes nothing."""
    viewer = actor(request)
    data = payload.model_dump()
    result = services.post_order(brand=viewer.brand, actor=viewer, **data)
    return Status(201 if result.created else 200, result.order)


@router.get("/orders", response=OrderPage)
def list_orders(
    request: HttpRequest, customer_id: Id | None = None, cursor: str | None = None, limit: int = 50
) -> object:
    rows, next_cursor = services.list_orders(
        actor=actor(request), customer_id=customer_id, cursor=cursor, limit=limit
    )
    return {"items": rows, "next_cursor": next_cursor}


@router.post("/orders/{source}/{external_id}/refunds", response={200: RefundOut, 201: RefundOut})
def post_refund(request: HttpRequest, source: str, external_id: str, payload: RefundIn) -> object:
    viewer = actor(request)
    refund, created = services.post_refund(
        brand=viewer.brand,
        actor=viewer,
        source=source,
        order_external_id=external_id,
        **payload.model_dump(),
    )
    return Status(201 if created else 200, refund)
